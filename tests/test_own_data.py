"""Your own data in one override, and the embedded samples out of a run that names its own.

Through the real CLI: a mapping override (refused before: "Key 'mine' is not in struct"), and a
fast dev run on a user file whose run record shows only that file trained.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import hydra
import pytest
import yaml
from conftest import QUIET, ROOT, run_cli

from xlam import SAMPLE_DATA_DIR
from xlam.utils.hydra import compose_config

SAMPLES = ["fc_single", "multi_turn", "chat"]


@pytest.fixture
def user_file(tmp_path: Path) -> Path:
    """A unified JSONL file of the user's, outside the package."""
    path = tmp_path / "data" / "mine.jsonl"
    path.parent.mkdir()
    lines = (SAMPLE_DATA_DIR / "multi_turn.jsonl").read_text().splitlines()[:24]
    path.write_text("\n".join(lines) + "\n")
    return path


def _trained_sources(overrides: list[str], tmp_path: Path) -> list[str]:
    dm = hydra.utils.instantiate(compose_config(overrides, output_dir=tmp_path / "run").data)
    return [s.name for s in dm.specs]


def test_a_mapping_override_composes_through_the_cli(user_file: Path, tmp_path: Path) -> None:
    spelling = f"data.sources={{mine: {{path: {user_file}, format: unified}}}}"
    proc = run_cli([spelling, "--cfg", "job"], cwd=tmp_path, timeout=120)
    composed = yaml.safe_load(proc.stdout)["data"]["sources"]
    assert composed["mine"] == {"path": str(user_file), "format": "unified"}
    # The samples are merged in by Hydra, and left out when the datamodule is built.
    assert _trained_sources([spelling], tmp_path) == ["mine"]


@pytest.mark.parametrize(
    "spelling",
    [
        "data.sources.mine.path={f}",  # one file
        "+data.sources.mine={{path: {f}}}",  # add one source
        "data.sources.fc_single.path={f}",  # the README's old example: no samples kept
        "data.sources={{mine: {{path: {f}}}, more: {{path: {f}, epochs: 0.5}}}}",  # a mixture
    ],
)
def test_naming_your_own_data_leaves_the_samples_out(
    spelling: str, user_file: Path, tmp_path: Path
) -> None:
    names = _trained_sources([spelling.format(f=user_file)], tmp_path)
    assert names and not set(names) & (set(SAMPLES) - {"fc_single"})
    if "fc_single" in names:
        assert names == ["fc_single"]


def test_samples_stay_unless_your_own_data_is_named(user_file: Path, tmp_path: Path) -> None:
    keep = [f"data.sources.mine.path={user_file}", "data.keep_samples=true"]
    assert _trained_sources(keep, tmp_path) == [*SAMPLES, "mine"]
    # Tuning a sample source is not naming data of your own.
    for tweak in (
        ["++data.sources.fc_single.max_drop_fraction=0.5"],
        ["data.sources.chat.epochs=1"],
        ["experiment=xlam_fc"],
        ["data=mixture_example"],
        [],
    ):
        assert _trained_sources(tweak, tmp_path) == SAMPLES, tweak


def test_one_override_trains_on_a_user_file_only(user_file: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run_cli(
        [f"data.sources.mine.path={user_file}", "debug=fdr", f"hydra.run.dir={run}", *QUIET],
        cwd=tmp_path,
        timeout=300,
    )
    (record,) = run.glob("run-*.json")
    mixture = json.loads(record.read_text())["mixture"]
    assert list(mixture["sources"]) == ["mine"]
    assert mixture["sources"]["mine"]["read"] == 24


def _readme_commands(section: str) -> list[list[str]]:
    """The ``xlam-train`` lines of a README section, continuation lines joined."""
    text = (ROOT / "README.md").read_text()
    body = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", body, flags=re.S)
    lines = "\n".join(blocks).replace("\\\n", " ").splitlines()
    cmds = []
    for line in lines:
        line = line.split("  #", 1)[0].strip()
        if line.startswith("xlam-train ") and "..." not in line and "<" not in line:
            cmds.append(shlex.split(line)[1:])
    return cmds


@pytest.mark.parametrize("section", ["Training a real model", "Bringing your own data"])
def test_readme_training_examples_work_as_written(section: str, tmp_path: Path) -> None:
    commands = _readme_commands(section)
    assert commands
    for args in commands:
        cfg = compose_config(args, output_dir=tmp_path / "run")
        named = {a.split("=", 1)[0].split(".")[2] for a in args if a.startswith("data.sources.")}
        if any(a.startswith("data.sources") for a in args):
            got = [s.name for s in hydra.utils.instantiate(cfg.data).specs]
            assert not set(got) & set(SAMPLES) - named, (args, got)

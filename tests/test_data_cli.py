"""``xlam-data convert | verify | stats`` run for real, in a subprocess, on real samples."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from xlam import TINY_TOKENIZER_DIR

EXE = shutil.which("xlam-data") or str(Path(sys.executable).parent / "xlam-data")


def run(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "120"}
    return subprocess.run(
        [EXE, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=120, env=env
    )


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def glaive_zh(shared_fixtures: Path) -> Path:
    return shared_fixtures / "datasets" / "sharegpt_glaive" / "glaive_toolcall_zh_demo.json"


def test_convert_verify_stats_pipeline(glaive_zh: Path, tmp_path: Path) -> None:
    conv = run(
        "convert",
        "--format",
        "sharegpt",
        "--source",
        "glaive_zh",
        glaive_zh,
        "zh.jsonl",
        cwd=tmp_path,
    )
    assert conv.returncode == 0, conv.stderr
    assert "read 300  converted 300  rejected 0" in conv.stdout
    assert len(lines(tmp_path / "zh.jsonl")) == 300

    ver = run(
        "verify",
        "zh.jsonl",
        "--out",
        "good.jsonl",
        "--rejects",
        "bad.jsonl",
        "--summary",
        "summary.json",
        cwd=tmp_path,
    )
    assert ver.returncode == 0, ver.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["read"] == 300 == summary["good"] + summary["rejected"]
    assert summary["by_source"]["glaive_zh"]["rules"]["orphan_tool_result"] == 2
    assert "orphan_tool_result" in ver.stdout and "glaive_zh" in ver.stdout
    assert len(lines(tmp_path / "good.jsonl")) == summary["good"]
    rejects = lines(tmp_path / "bad.jsonl")
    assert len(rejects) == summary["rejected"]
    assert all(r["provenance"]["file"] == str(glaive_zh) for r in rejects)

    strict = run("verify", "zh.jsonl", "--out", "g2.jsonl", "--strict", cwd=tmp_path)
    assert strict.returncode == 1  # rejections fail a strict run
    assert (tmp_path / "g2.rejects.jsonl").exists()

    tok = TINY_TOKENIZER_DIR
    stats = run(
        "stats",
        "good.jsonl",
        "--tokenizer",
        tok,
        "--plots",
        "plots",
        "--json",
        "stats.json",
        cwd=tmp_path,
    )
    assert stats.returncode == 0, stats.stderr
    assert "calls_per_turn" in stats.stdout and "length (tokens)" in stats.stdout
    for name in ("messages", "assistant_turns", "calls_per_turn", "length"):
        assert (tmp_path / "plots" / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads((tmp_path / "stats.json").read_text())["sources"]["glaive_zh"]
    assert data["trajectories"] == summary["good"] and data["length"]["max"] > 0


def test_convert_with_verify_in_one_pass(shared_fixtures: Path, tmp_path: Path) -> None:
    src = shared_fixtures / "datasets" / "xlam_fc_60k" / "sample.json"
    res = run(
        "convert",
        "-f",
        "xlam_fc_60k",
        src,
        "out/good.jsonl",
        "--verify",
        "--max-tokens",
        "1",
        cwd=tmp_path,
    )
    assert res.returncode == 2 and "unrecognized arguments" in res.stderr  # verify-only option
    res = run("convert", "-f", "xlam_fc_60k", src, "out/good.jsonl", "--verify", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert len(lines(tmp_path / "out" / "good.jsonl")) == 5
    assert (tmp_path / "out" / "good.rejects.jsonl").read_text() == ""


def test_malformed_input_is_reported_not_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_bytes(b'{"query": "q", "answers": "[]"}\n{oops\n\xff\xfe\n[]\n')
    res = run(
        "convert",
        "-f",
        "xlam_fc_60k",
        "in.jsonl",
        "out.jsonl",
        "--rejects",
        "rej.jsonl",
        cwd=tmp_path,
    )
    assert res.returncode == 0 and "Traceback" not in res.stderr
    assert "rejected 3" in res.stdout
    assert [(r["rule"], r["origin"]["line"]) for r in lines(tmp_path / "rej.jsonl")] == [
        ("invalid_json", 2),
        ("invalid_utf8", 3),
        ("record_type", 4),
    ]
    res = run("verify", "in.jsonl", "--out", "g.jsonl", cwd=tmp_path)
    assert res.returncode == 0 and "Traceback" not in res.stderr
    assert [r["rule"] for r in lines(tmp_path / "g.rejects.jsonl")] == [
        "schema",
        "invalid_json",
        "invalid_utf8",
        "record_type",
    ]


@pytest.mark.parametrize(
    "args, message",
    [
        (["convert", "-f", "openai", "missing.jsonl", "o.jsonl"], "missing.jsonl: no such file"),
        (["convert", "-f", "openai", "in.jsonl", "in.jsonl"], "is also an input"),
        (["verify", "in.jsonl", "--out", "g.jsonl", "--max-tokens", "5"], "go together"),
        (
            ["verify", "in.jsonl", "--out", "g.jsonl", "--tokenizer", "nope", "--max-tokens", "5"],
            "not a directory",
        ),
        (["stats", "folder"], "save_to_disk"),
    ],
)
def test_user_mistakes_exit_2_with_one_line(args: list[str], message: str, tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_text("{}\n")
    (tmp_path / "folder").mkdir()
    res = run(*args, cwd=tmp_path)
    assert res.returncode == 2
    assert message in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_stats_groups_synthetic_data_by_kind(tmp_path: Path) -> None:
    # The data card of a generated set: stats per task kind, as the lines say.
    from xlam.data.cli import main

    out = tmp_path / "synth"
    assert main(["synth", "--n", "64", "--test-n", "8", "--seed", "3", "--out", str(out)]) == 0
    assert (
        main(
            [
                "stats",
                str(out / "train.jsonl"),
                "--group-by",
                "metadata.synth.kind",
                "--json",
                str(tmp_path / "stats.json"),
            ]
        )
        == 0
    )
    stats = json.loads((tmp_path / "stats.json").read_text())
    lines = [json.loads(x) for x in (out / "train.jsonl").read_text().splitlines()]
    kinds = Counter(t["metadata"]["synth"]["kind"] for t in lines)
    assert {k: v["trajectories"] for k, v in stats["sources"].items()} == dict(kinds)
    assert len(kinds) == 8 and sum(kinds.values()) == 64

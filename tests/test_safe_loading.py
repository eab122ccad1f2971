"""Nothing a run reads can run code, and nothing it writes holds a secret.

* Checkpoints are plain data: a real one loads with ``torch.load(weights_only=True)``; resume
  and export refuse one that carries a pickled callable, even where the environment asks
  torch for the unsafe default (``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``).
* A model or tokenizer folder whose config maps to custom code (``auto_map``) is refused,
  even when ``y`` is waiting on stdin for transformers' "run the custom code?" prompt.
* A loaded model is never kernelized from the hub (transformers 5.x does so by default on a
  GPU, fetching code at load time).
* API keys and tokens in the environment never reach the run directory (logs, configs,
  Hydra files, run record, csv, wandb files, checkpoints) nor the index of runs.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import ENV, run_cli

from xlam import TINY_TOKENIZER_DIR
from xlam.utils.checkpoint import UnsafeCheckpointError, resolve_ckpt_path

SECRETS = {
    "OPENAI_API_KEY": "sk-xlamtest-0penai-5ecret-7f3a9c",
    "HF_TOKEN": "hf_xlamtestHubT0ken5ecret81d2",
    "WANDB_API_KEY": "xlamtestwandb5ecret0000000000000000000042",
    "MYCORP_SERVICE_TOKEN": "tok-xlamtest-c0rp-5ecret-99",
    "XLAM_JUDGE_API_KEY": "judge-xlamtest-5ecret-k3y",  # read by the config below
}


@pytest.fixture(scope="module")
def secret_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The real CLI, csv + offline wandb loggers, secrets in the environment and one of them
    read into the config with ``${oc.env:...}`` (e.g. an LLM-judge key)."""
    root = tmp_path_factory.mktemp("secrets")
    proc = run_cli(
        [
            "trainer.max_steps=2",
            "export.enabled=false",
            "logger=wandb",
            "data.val_size=0",
            "trainer.enable_progress_bar=false",
            "callbacks.progress_bar=null",
            f"paths.log_dir={root}/logs",
            f"hydra.run.dir={root}/run",
            "+eval.judge_api_key=${oc.env:XLAM_JUDGE_API_KEY}",
        ],
        root,
        env={**ENV, **SECRETS},
        timeout=600,
    )
    return {"root": root, "run": root / "run", "stdout": proc.stdout, "stderr": proc.stderr}


# -- secrets -----------------------------------------------------------------------------
def test_secrets_never_reach_logs_records_or_index(secret_run: dict[str, Any]) -> None:
    root, run = secret_run["root"], secret_run["run"]
    files = [p for p in root.rglob("*") if p.is_file()]
    names = {str(p.relative_to(root)) for p in files}
    # What is scanned: every kind of file a run writes.
    for expected in (
        "run/config.yaml",
        "run/train.log",
        "run/.hydra/config.yaml",
        "run/.hydra/hydra.yaml",
        "run/csv/metrics.csv",
        "run/checkpoints/last.ckpt",
        "logs/runs_index.jsonl",
    ):
        assert expected in names, f"{expected} not written: {sorted(names)}"
    assert any(n.startswith("run/wandb/") for n in names)
    assert any(n.startswith("run/run-") and n.endswith(".json") for n in names)
    for name, value in SECRETS.items():
        for p in files:
            assert value.encode() not in p.read_bytes(), f"{name} leaked into {p}"
        assert value not in secret_run["stdout"] + secret_run["stderr"], f"{name} in console"
    # The key read into the config is there, masked, in what the run records.
    record = json.loads(next(run.glob("run-*.json")).read_text())
    assert record["config"]["eval"]["judge_api_key"] == "<redacted:XLAM_JUDGE_API_KEY>"
    assert "<redacted:XLAM_JUDGE_API_KEY>" in (run / "config.yaml").read_text()


def test_redact_masks_secret_named_variables_only() -> None:
    from xlam.utils.run_record import redact, secret_values

    env = {
        "MY_API_KEY": "abcdefgh12345",
        "GITHUB_TOKEN": "ghp_0123456789",
        "DB_PASSWORD": "hunter2hunter2",
        "AWS_SECRET_ACCESS_KEY": "aws/secret/0123",
        "TOKENIZERS_PARALLELISM": "false",  # "TOKENIZERS" is not "TOKEN"
        "XLAM_TOKENIZER": "/data/tokenizers/qwen",
        "SHORT_KEY": "1",  # too short to be a secret
    }
    secrets = secret_values(env)
    assert set(secrets.values()) == {
        "MY_API_KEY",
        "GITHUB_TOKEN",
        "DB_PASSWORD",
        "AWS_SECRET_ACCESS_KEY",
    }
    record = {"a": ["x ghp_0123456789 y", 1], "url": "https://u:hunter2hunter2@db", "n": 3}
    assert redact(record, secrets) == {
        "a": ["x <redacted:GITHUB_TOKEN> y", 1],
        "url": "https://u:<redacted:DB_PASSWORD>@db",
        "n": 3,
    }
    assert redact({"path": "/data/tokenizers/qwen"}, secrets) == {"path": "/data/tokenizers/qwen"}


# -- checkpoints -------------------------------------------------------------------------
def _plain(obj: Any, where: str = "checkpoint") -> None:
    if isinstance(obj, dict):
        for k, v in obj.items():
            _plain(k, where)
            _plain(v, f"{where}[{k!r}]")
    elif isinstance(obj, list | tuple):
        for i, v in enumerate(obj):
            _plain(v, f"{where}[{i}]")
    else:
        assert isinstance(obj, str | int | float | bool | torch.Tensor | None), (where, type(obj))


def test_real_checkpoint_is_plain_data(secret_run: dict[str, Any]) -> None:
    # Hydra DictConfigs or partials in hparams would need weights_only=False to resume.
    ckpt = torch.load(
        secret_run["run"] / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True
    )
    assert type(ckpt["hyper_parameters"]) is dict
    _plain(ckpt)


class _Payload:
    """Unpickling this touches a file: a stand-in for any code a checkpoint could carry."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.marker,))


def test_resume_and_export_never_unpickle_code(
    secret_run: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hydra

    from xlam.models.export import export_checkpoint, load_checkpoint_state
    from xlam.utils.hydra import compose_config

    run = secret_run["run"]
    marker = tmp_path / "code-ran"
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    ckpt["callbacks"]["evil"] = _Payload(marker)
    poisoned = tmp_path / "poisoned.ckpt"
    torch.save(ckpt, poisoned)
    # Some clusters set this to load old checkpoints: torch then unpickles anything unless
    # the caller asks for weights_only=True itself.
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")

    with pytest.raises(UnsafeCheckpointError, match=r"poisoned\.ckpt"):
        resolve_ckpt_path(str(poisoned), run / "checkpoints")
    assert not marker.exists()
    # Resume: what Trainer.fit(ckpt_path=...) calls, through the configured checkpoint IO.
    cfg = compose_config(["trainer.enable_progress_bar=false"], output_dir=tmp_path / "t")
    trainer = hydra.utils.instantiate(cfg.trainer, logger=False, callbacks=[])
    with pytest.raises(UnsafeCheckpointError, match=r"poisoned\.ckpt"):
        trainer.strategy.load_checkpoint(poisoned)
    assert not marker.exists()
    # Export.
    with pytest.raises(UnsafeCheckpointError, match=r"poisoned\.ckpt"):
        load_checkpoint_state(poisoned)
    with pytest.raises(UnsafeCheckpointError, match=r"poisoned\.ckpt"):
        export_checkpoint(run, str(poisoned), tmp_path / "export")
    assert not marker.exists()
    # The genuine checkpoint still resumes through the same path.
    assert trainer.strategy.load_checkpoint(run / "checkpoints" / "last.ckpt")["global_step"] == 2


# -- trust_remote_code -------------------------------------------------------------------
_CUSTOM_CODE = textwrap.dedent("""
    import os
    with open(os.environ["XLAM_CODE_MARKER"], "a") as f:
        f.write(__file__ + "\\n")
""")

_LOAD = textwrap.dedent("""
    import json, sys
    from xlam.data.cache import get_renderer
    from xlam.data.datamodule import TrajectoryDataModule
    from xlam.models.components.build import build_causal_lm

    model_dir, tok_dir, data, results = sys.argv[1:]
    loaders = {
        "model builder": lambda: build_causal_lm(model_dir, 100),
        "datamodule": lambda: TrajectoryDataModule(
            {"fc": {"path": data}}, tok_dir, batch_size=2, cache_dir=None
        ).prepare(),
        "cache renderer": lambda: get_renderer(tok_dir, {}),
    }
    out = {}
    for name, load in loaders.items():
        try:
            load()
            out[name] = "loaded"
        except Exception as e:
            out[name] = f"{type(e).__name__}: {e}"
    with open(results, "w") as f:  # stdout has transformers' prompts
        json.dump(out, f)
""")


def test_custom_code_in_model_or_tokenizer_folder_never_runs(tmp_path: Path) -> None:
    from xlam import SAMPLE_DATA_DIR

    model = tmp_path / "custom_model"
    model.mkdir()
    (model / "config.json").write_text(
        json.dumps(
            {
                "model_type": "xlam_custom",
                "auto_map": {
                    "AutoConfig": "custom_code.CustomConfig",
                    "AutoModelForCausalLM": "custom_code.CustomModel",
                },
            }
        )
    )
    (model / "custom_code.py").write_text(_CUSTOM_CODE)
    tok = tmp_path / "custom_tokenizer"
    shutil.copytree(TINY_TOKENIZER_DIR, tok)
    tok_cfg = json.loads((tok / "tokenizer_config.json").read_text())
    tok_cfg["auto_map"] = {"AutoTokenizer": [None, "custom_code.CustomTokenizer"]}
    tok_cfg["tokenizer_class"] = "CustomTokenizer"
    (tok / "tokenizer_config.json").write_text(json.dumps(tok_cfg))
    (tok / "custom_code.py").write_text(_CUSTOM_CODE)
    marker = tmp_path / "code-ran"
    data = SAMPLE_DATA_DIR / "chat.jsonl"

    proc = subprocess.run(
        [sys.executable, "-c", _LOAD, str(model), str(tok), str(data), str(tmp_path / "out.json")],
        # transformers asks "Do you wish to run the custom code? [y/N]" when the caller
        # leaves trust_remote_code unset: an answer waiting on stdin must not count.
        input="y\n" * 20,
        env={
            **ENV,
            "XLAM_CODE_MARKER": str(marker),
            "HF_MODULES_CACHE": str(tmp_path / "modules"),
        },
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "out.json").read_text())
    assert not marker.exists(), f"custom code ran: {marker.read_text()} {results}"
    for loader, folder in (
        ("model builder", model),
        ("datamodule", tok),
        ("cache renderer", tok),
    ):
        assert results[loader].startswith("ValueError"), (loader, results[loader])
        assert "custom code" in results[loader] and str(folder) in results[loader]


def test_loaded_models_fetch_no_hub_kernels(tiny_export: Path) -> None:
    # On the CPU the hub's kernel mapping has nothing to fetch, but the flag is the switch:
    # where it is on, a load onto a GPU kernelizes (offline: the load fails, seen on an H200).
    from transformers import AutoModelForCausalLM

    from xlam.eval.backends import HFBackend
    from xlam.models.components.build import build_causal_lm

    assert AutoModelForCausalLM.from_pretrained(tiny_export).use_kernels  # the default
    assert not build_causal_lm(str(tiny_export), 0).use_kernels
    assert not HFBackend(str(tiny_export), device="cpu").model.use_kernels

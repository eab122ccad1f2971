"""The embedded default run end to end: trains, loss falls, exports, records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import TINY_QWEN2, train_losses

from xlam.train import train
from xlam.utils.hydra import compose_config


@pytest.fixture(scope="module")
def default_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict, Path]:
    out = tmp_path_factory.mktemp("default_run")
    cfg = compose_config([f"paths.log_dir={out}/logs"], output_dir=out / "run")
    metrics, objects = train(cfg)
    return metrics, objects, out / "run"


def test_fast_dev_run(tmp_path: Path) -> None:
    cfg = compose_config(["debug=fdr"], output_dir=tmp_path)
    metrics, objects = train(cfg)
    assert objects["trainer"].global_step == 1
    assert torch.isfinite(torch.tensor(metrics["train/loss"]))


def test_default_loss_falls(default_run: tuple[dict, dict, Path]) -> None:
    _, objects, run_dir = default_run
    losses = list(train_losses(run_dir).values())
    assert len(losses) == objects["trainer"].global_step >= 20
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < first, (first, last)


def test_default_run_outputs(default_run: tuple[dict, dict, Path]) -> None:
    _, objects, run_dir = default_run
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == objects["trainer"].global_step
    # The stream state travels with the checkpoint: it points past the last trained step,
    # and (the default plan packs into whole steps) every source gave exactly its plan.
    stream = ckpt["TrajectoryDataModule"]["stream"]
    assert stream["step"] == ckpt["global_step"]
    assert stream["seen"] == objects["datamodule"].plan
    record_path = run_dir / f"run-{objects['run_id']}.json"
    record = json.loads(record_path.read_text())
    assert record["config"]["model"]["from_config"]["model_type"] == "qwen2"
    sources = record["mixture"]["sources"]
    assert set(sources) == {"fc_single", "multi_turn", "chat"}
    assert all(s["planned"] > 0 for s in sources.values())
    assert sum(s["planned"] for s in sources.values()) == record["mixture"]["total_samples"]
    assert record["versions"]["torch"] and record["versions"]["transformers"]
    assert "commit" in record["git"]


def test_export_loads_and_generates(default_run: tuple[dict, dict, Path]) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    export = default_run[2] / "export"
    tok = AutoTokenizer.from_pretrained(export)
    model = AutoModelForCausalLM.from_pretrained(export)
    msgs = [{"role": "user", "content": "What is the weather in Paris?"}]
    ids = tok.apply_chat_template(
        msgs, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    out = model.generate(**ids, max_new_tokens=8, do_sample=False)
    assert out.shape[1] > ids["input_ids"].shape[1]
    assert model.generation_config.eos_token_id == tok.eos_token_id


def test_config_built_weights_ignore_the_init_device() -> None:
    # Strategies build under different device contexts (Lightning's single-device on the GPU,
    # FSDP and ZeRO-3 on the CPU, meta for empty init): a seed must give the same weights.
    from xlam.models.components.build import build_causal_lm

    plain = build_causal_lm(None, 128, TINY_QWEN2, "float32", None, seed=3).state_dict()
    with torch.device("meta"):
        other = build_causal_lm(None, 128, TINY_QWEN2, "float32", None, seed=3).state_dict()
    assert plain.keys() == other.keys()
    assert all(torch.equal(plain[k], other[k]) for k in plain)

"""Multi-process DeepSpeed ZeRO-2/3 on CPU through the real CLI (2 processes, gloo).

Lightning launches the second process itself (``trainer.devices=2``). The global batch is
split differently from a single-process CPU run (2 ranks x 2 micro-batches x 2 rows against
1 x 1 x 8), yet every step's loss and gradient norm match it: the loss is the token mean of
the whole step and DeepSpeed sees the same gradients.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import QUIET, TINY_QWEN2, XLAM_EXPORT, run_cli, step_metrics, train_small

# Small and quiet: 4 steps, a checkpoint every 2, no validation or progress bar.
COMMON = [
    *QUIET,
    "data.val_size=0",
    "trainer.precision=32-true",
    "trainer.max_steps=4",
    "callbacks.model_checkpoint.every_n_train_steps=2",
    "model.optimizer.lr=0.01",
]
SPLIT = ["trainer.devices=2", "data.batch_size=2", "trainer.accumulate_grad_batches=2"]


def _cpu_reference(tmp: Path) -> dict[int, dict[str, float]]:
    train_small(tmp / "cpu", *COMMON, "data.batch_size=8", "export.enabled=false")
    return step_metrics(tmp / "cpu")


def _assert_same_steps(
    a: dict[int, dict[str, float]],
    b: dict[int, dict[str, float]],
    steps: list[int],
    keys: tuple[str, ...] = ("train/loss",),
    tol: float = 1e-4,
) -> None:
    for s in steps:
        for k in keys:
            assert abs(a[s][k] - b[s][k]) <= tol * max(1.0, abs(a[s][k])), (s, k, a[s], b[s])


@pytest.fixture(scope="module")
def cpu_reference(tmp_path_factory: pytest.TempPathFactory) -> dict[int, dict[str, float]]:
    return _cpu_reference(tmp_path_factory.mktemp("cpu_ref"))


# ZeRO-3 is also covered by the LoRA and pretrained-folder tests below: its full-model
# variant of this test is marked slow.
# Stage 3 also runs the chunked loss (tiny chunks): it runs inside the LM head, whose weight
# ZeRO-3 partitions, gathered in forward and again for the recomputation in backward; the CPU
# reference computes every supervised logit at once.
CHUNKED = ["model.chunked_loss=true", "model.loss_chunk_tokens=16"]


@pytest.mark.parametrize(
    ("stage", "extra"), [(2, []), pytest.param(3, CHUNKED, marks=pytest.mark.slow)]
)
def test_deepspeed_trains_like_cpu_and_resumes(
    stage: int, extra: list[str], tmp_path: Path, cpu_reference: dict
) -> None:
    run = tmp_path / "run"
    run_cli(
        [
            *COMMON,
            *SPLIT,
            *extra,
            f"trainer=deepspeed_zero{stage}",
            f"hydra.run.dir={run}",
            "export.enabled=false",
        ],
        cwd=tmp_path,
    )
    got = step_metrics(run)
    assert sorted(got) == [0, 1, 2, 3]
    assert got[3]["train/loss"] < got[0]["train/loss"]  # it learns
    _assert_same_steps(cpu_reference, got, [0, 1, 2, 3], ("train/loss", "train/grad_norm"))

    ds = json.loads((run / "deepspeed_config.json").read_text())
    assert ds["zero_optimization"]["stage"] == stage
    assert ds["train_micro_batch_size_per_gpu"] == 2
    assert ds["gradient_accumulation_steps"] == 2
    assert ds["train_batch_size"] == 8
    assert ds["gradient_clipping"] == 1.0
    assert ds["client_optimizer"]["params"]["lr"] == 0.01
    record = json.loads(next(run.glob("run-*.json")).read_text())
    assert record["deepspeed_config"] == ds and record["world_size"] == 2
    assert record["mixture"]["actual_total"] > 0

    # The sharded checkpoint of step 2 reloads: model, optimizer, schedule and data position.
    ckpt = run / "checkpoints" / "step000002.ckpt"
    assert (ckpt / "checkpoint").is_dir()
    resumed = tmp_path / "resumed"
    run_cli(
        [
            *COMMON,
            *SPLIT,
            *extra,
            f"trainer=deepspeed_zero{stage}",
            f"hydra.run.dir={resumed}",
            f"ckpt_path={ckpt}",
            "export.enabled=false",
        ],
        cwd=tmp_path,
    )
    again = step_metrics(resumed)
    assert sorted(again) == [2, 3]
    _assert_same_steps(got, again, [2, 3], ("train/loss",), tol=1e-5)


def test_ddp_trains_like_cpu(tmp_path: Path, cpu_reference: dict) -> None:
    # DDP averages gradients over ranks: the loss scaling must cancel it exactly too.
    run = tmp_path / "run"
    run_cli(
        [
            *COMMON,
            *SPLIT,
            "trainer=ddp",
            f"hydra.run.dir={run}",
            "export.enabled=false",
            "callbacks.model_checkpoint.every_n_train_steps=4",
        ],
        cwd=tmp_path,
    )
    _assert_same_steps(
        cpu_reference, step_metrics(run), [0, 1, 2, 3], ("train/loss", "train/grad_norm")
    )


def test_zero3_lora_saves_adapters_and_exports(tmp_path: Path) -> None:
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    run = tmp_path / "run"
    run_cli(
        [
            *COMMON,
            *SPLIT,
            "trainer=deepspeed_zero3",
            "model.lora.enabled=true",
            f"hydra.run.dir={run}",
        ],
        cwd=tmp_path,
    )
    got = step_metrics(run)
    assert got[3]["train/loss"] < got[0]["train/loss"]

    adapter = load_file(run / "adapter" / "adapter_model.safetensors")
    assert adapter and all("lora_" in k for k in adapter)
    assert any("lora_B" in k and v.abs().sum() > 0 for k, v in adapter.items())  # trained
    assert json.loads((run / "adapter" / "adapter_config.json").read_text())["r"] == 8

    # Checkpoints keep what trains (the adapters); the base is rebuilt from its seed/path.
    shards = list((run / "checkpoints" / "last.ckpt" / "checkpoint").glob("*model_states.pt"))
    assert len(shards) == 2

    # xlam-export consolidates the ZeRO-3 shards and merges: the same model as at the end.
    out = tmp_path / "exported"
    run_cli(
        [str(run), "--out", str(out), "--adapter-out", str(tmp_path / "adapter")],
        cwd=tmp_path,
        exe=XLAM_EXPORT,
    )
    merged_end = AutoModelForCausalLM.from_pretrained(run / "export")
    merged_cli = AutoModelForCausalLM.from_pretrained(out)
    ids = torch.tensor([[1, 5, 9, 13, 2]])
    with torch.no_grad():
        a, b = merged_end(ids).logits, merged_cli(ids).logits
    assert torch.allclose(a, b, atol=1e-4)


def test_zero3_loads_a_pretrained_folder_partitioned(tmp_path: Path) -> None:
    # transformers loads the checkpoint straight into ZeRO-3 shards (HfDeepSpeedConfig);
    # the first steps must equal a single-process run on the same folder.
    from transformers import AutoTokenizer

    from xlam import TINY_TOKENIZER_DIR
    from xlam.models.components.build import build_causal_lm

    folder = tmp_path / "pretrained"
    tok = AutoTokenizer.from_pretrained(TINY_TOKENIZER_DIR)
    tiny = {**TINY_QWEN2, "num_hidden_layers": 2}  # layers to partition
    build_causal_lm(None, len(tok), tiny, "float32", None, seed=7).save_pretrained(folder)
    tok.save_pretrained(folder)
    model = [
        f"model.path={folder}",
        f"model.tokenizer_path={folder}",
        "model.from_config=null",
        "trainer.max_steps=2",
        "export.enabled=false",
        "~callbacks.model_checkpoint",
    ]
    run_cli(
        [*COMMON, *SPLIT, *model, "trainer=deepspeed_zero3", f"hydra.run.dir={tmp_path / 'zero3'}"],
        cwd=tmp_path,
    )
    train_small(tmp_path / "cpu", *COMMON, *model, "data.batch_size=8")
    _assert_same_steps(
        step_metrics(tmp_path / "cpu"),
        step_metrics(tmp_path / "zero3"),
        [0, 1],
        ("train/loss", "train/grad_norm"),
    )
    # Partitioned parameters are empty tensors; the record (and MFU) counts the real ones.
    counts = [
        json.loads(next((tmp_path / d).glob("run-*.json")).read_text())["model_params"]
        for d in ("cpu", "zero3")
    ]
    assert counts[0] == counts[1] and counts[0]["params"] > 0


def test_sweeps_refuse_multi_process_points(tmp_path: Path) -> None:
    proc = run_cli(
        [
            "-m",
            f"hydra.sweep.dir={tmp_path / 'sweep'}",
            "trainer=ddp",
            "trainer.devices=2",
            "trainer.max_steps=1",
            "extras.print_config=false",
        ],
        tmp_path,
        timeout=300,
        check=False,
    )
    assert proc.returncode != 0
    assert "sweeps run single-process points" in proc.stderr

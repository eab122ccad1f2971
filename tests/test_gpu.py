"""CUDA checks: DeepSpeed ZeRO-2/3 in bf16, QLoRA nf4, MFU. Skipped without a GPU.

Self-contained: config-built models on the embedded tokenizer, no downloads. Each run goes
through the real entry point (``python -m xlam.train``) in a subprocess.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

COMMON = [
    "model=small_100m",
    "extras.print_config=false",
    "trainer.enable_progress_bar=false",
    "data.val_size=0",
    "data.batch_size=4",
    "data.packing.seq_length=512",
    "trainer.max_steps=8",
    "callbacks.model_checkpoint.every_n_train_steps=4",
    "model.optimizer.lr=1e-3",
    "trainer.devices=1",
]


def _train(args: list[str], run: Path) -> dict[int, dict[str, float]]:
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "WANDB_MODE": "offline",
        "TOKENIZERS_PARALLELISM": "false",
        "HYDRA_FULL_ERROR": "1",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "xlam.train", *COMMON, *args, f"hydra.run.dir={run}"],
        cwd=run.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    with (run / "csv" / "metrics.csv").open() as f:
        return {
            int(r["step"]): {k: float(v) for k, v in r.items() if v}
            for r in csv.DictReader(f)
            if r.get("train/loss")
        }


@pytest.mark.parametrize("stage", [2, 3])
def test_deepspeed_bf16_on_cuda(stage: int, tmp_path: Path) -> None:
    run = tmp_path / f"zero{stage}"
    steps = _train(
        [
            f"trainer=deepspeed_zero{stage}",
            "trainer.accelerator=gpu",
            "trainer.precision=bf16-mixed",
        ],
        run,
    )
    assert steps[7]["train/loss"] < steps[0]["train/loss"]
    ds = json.loads((run / "deepspeed_config.json").read_text())
    assert ds["bf16"]["enabled"] and ds["zero_optimization"]["stage"] == stage
    # The peak of H100/H200/A100 is known: MFU is logged.
    assert 0.0 < steps[7].get("train/mfu", 0.0) < 1.0
    assert steps[7]["train/tokens_per_s_per_device"] > 0
    assert (run / "checkpoints" / "last.ckpt").is_dir()
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(run / "export")
    assert sum(p.numel() for p in model.parameters()) > 50_000_000


def test_fsdp_bf16_on_cuda(tmp_path: Path) -> None:
    # PyTorch's FSDP needs an accelerator (it refuses the CPU), so only CUDA exercises it.
    run = tmp_path / "fsdp"
    steps = _train(["trainer=fsdp", "trainer.precision=bf16-mixed"], run)
    assert steps[7]["train/loss"] < steps[0]["train/loss"]
    assert steps[7]["train/grad_norm"] > 0
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(run / "export")
    assert sum(p.numel() for p in model.parameters()) > 50_000_000


def test_deepspeed_zero3_lora_bf16_on_cuda(tmp_path: Path) -> None:
    run = tmp_path / "zero3_lora"
    steps = _train(
        [
            "trainer=deepspeed_zero3",
            "trainer.accelerator=gpu",
            "model.lora.enabled=true",
            "model.optimizer.lr=3e-3",
        ],
        run,
    )
    assert steps[7]["train/loss"] < steps[0]["train/loss"]
    assert (run / "adapter" / "adapter_model.safetensors").stat().st_size > 0


@pytest.mark.skipif(
    importlib.util.find_spec("bitsandbytes") is None,
    reason="bitsandbytes is not installed (pip install 'xlam[gpu]')",
)
def test_qlora_nf4_small_model(tmp_path: Path) -> None:
    run = tmp_path / "qlora"
    steps = _train(
        [
            "trainer=gpu",
            "model.lora.enabled=true",
            "model.quantization=nf4",
            "model.optimizer.lr=3e-3",
        ],
        run,
    )
    assert steps[7]["train/loss"] < steps[0]["train/loss"]
    record = json.loads(next(run.glob("run-*.json")).read_text())
    counts = record["model_params"]
    assert counts["trainable_params"] < 0.1 * counts["params"]
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert all("lora_" in k for k in ckpt["state_dict"])  # the 4-bit base is not saved
    from transformers import AutoModelForCausalLM

    merged = AutoModelForCausalLM.from_pretrained(run / "export", dtype=torch.bfloat16)
    assert not any("lora" in n for n, _ in merged.named_parameters())


@pytest.mark.skipif(
    importlib.util.find_spec("flash_attn") is None, reason="flash-attn is not installed"
)
def test_packed_forward_flash_attention_2(tmp_path: Path, tiny_tokenizer) -> None:
    # CausalLMModule.forward flattens packed rows for flash attention (varlen from position
    # ids): every sample must equal its unpacked forward, and the check must see a leak.
    import itertools

    import hydra

    from xlam import SAMPLE_DATA_DIR
    from xlam.data.render import Renderer
    from xlam.data.schema import read_trajectories
    from xlam.models.components.packing_check import PackingLeakError, check_packed_forward
    from xlam.utils.hydra import compose_config

    renderer = Renderer(tiny_tokenizer)
    samples = [
        list(renderer.render(t)[0].input_ids)
        for name in ("chat", "fc_single", "multi_turn")
        for t in itertools.islice(read_trajectories(SAMPLE_DATA_DIR / f"{name}.jsonl"), 3)
    ]
    overrides = ["model.attn_implementation=flash_attention_2", "model.dtype=bfloat16"]
    module = hydra.utils.instantiate(compose_config(overrides, output_dir=tmp_path).model)
    module.configure_model()
    module.cuda().eval()
    args = (samples, torch.bfloat16, "flash_attention_2", 1024)
    result = check_packed_forward(module, *args, device="cuda")
    assert result.shares_a_row and len(result.diffs) == 7 and not result.failed
    forward = module.model.forward

    def leaking(*a, **kw):
        kw.pop("position_ids", None)  # one causal sequence over the flattened rows
        return forward(*a, **kw)

    module.model.forward = leaking
    with pytest.raises(PackingLeakError, match="flash_attention_2"):
        check_packed_forward(module, *args, device="cuda")


# -- each speed option of tests/test_kernels.py against the plain path (bf16) ---------------
OPTIONS = {
    "liger": ["model.kernels=liger"],
    "compile": ["model.compile=true"],
    "checkpointing": ["model.gradient_checkpointing=true"],
    "checkpointing_every2": ["model.gradient_checkpointing={every: 2}"],
}
PLAIN = ["trainer=gpu", "trainer.precision=bf16-mixed", "export.enabled=false"]


@pytest.fixture(scope="module")
def plain_cuda_losses(tmp_path_factory: pytest.TempPathFactory) -> list[float]:
    """The plain path's losses, once for every option."""
    steps = _train([*PLAIN, "model.gradient_checkpointing=false"], tmp_path_factory.mktemp("plain"))
    return [steps[k]["train/loss"] for k in sorted(steps)]


@pytest.mark.parametrize("option", sorted(OPTIONS))
def test_speed_option_equals_the_plain_path(
    option: str, plain_cuda_losses: list[float], tmp_path: Path
) -> None:
    if option == "liger" and importlib.util.find_spec("liger_kernel") is None:
        pytest.skip("liger-kernel is not installed (pip install 'xlam[gpu]')")
    args = OPTIONS[option]
    if not option.startswith("checkpointing"):
        args = [*args, "model.gradient_checkpointing=false"]
    # Each run in its own process: Liger's RoPE patch is module-wide.
    steps = _train([*PLAIN, *args], tmp_path / option)
    got = [steps[k]["train/loss"] for k in sorted(steps)]
    assert len(got) == len(plain_cuda_losses) == 8
    # bf16 autocast: kernels that fuse or reorder reductions differ by rounding only.
    assert got == pytest.approx(plain_cuda_losses, rel=2e-2, abs=2e-2)

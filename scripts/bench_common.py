"""What the TRL comparisons (``bench_vs_trl.py``, ``bench_dpo.py``) share: the xlam run's
overrides, the model both build, and the per-step timer of the TRL side."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any


def xlam_overrides(spec: dict[str, Any], lr: float, gpu_precision: str = "bf16-true") -> list[str]:
    """``xlam-train`` overrides of a timed run: one packed row per step, nothing else on;
    ``spec["attn"]`` the attention implementation."""
    overrides = [
        f"model.attn_implementation={spec['attn']}",
        f"model.optimizer.lr={lr}",
        f"trainer.max_steps={spec['steps']}",
        f"data.packing.seq_length={spec['seq']}",
        "data.batch_size=1",
        "data.val_size=0",
        "data.cache_dir=null",
        f"paths.log_dir={Path(spec['out']) / 'logs'}",
        "export.enabled=false",
        "extras.print_config=false",
        "trainer.enable_progress_bar=false",
        f"seed={spec['seed']}",
    ]
    gpu = ["trainer=gpu", f"trainer.precision={gpu_precision}"]
    return overrides + (gpu if spec["gpu"] else [])


def _shape(
    family: str, width: int, ffn: int, layers: int, heads: int, kv: int, tied: bool = False
) -> list[str]:
    """Overrides of ``model.from_config`` that build a model of this shape."""
    cfg = {
        "model_type": family,
        "hidden_size": width,
        "intermediate_size": ffn,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv,
        "max_position_embeddings": 32768,
        "tie_word_embeddings": str(tied).lower(),
    }
    return [f"model.from_config.{k}={v}" for k, v in cfg.items()]


# The shapes of real models over ``model=tiny`` (random-initialised: throughput needs no
# trained weights; RoPE's base frequency changes no FLOP and is left at the family default).
SHAPES = {
    "tiny": [],
    "qwen2_5_1_5b": _shape("qwen2", 1536, 8960, 28, 12, 2, tied=True),
    "qwen2_5_7b": _shape("qwen2", 3584, 18944, 28, 28, 4),
    "llama3_8b": _shape("llama", 4096, 14336, 32, 32, 8),
}


def tiny_model(vocab_size: int, seed: int, shape: str = "tiny", device: str = "cpu") -> Any:
    """A random-initialised model of ``model=tiny``'s shape (``from_config``), or of one of
    :data:`SHAPES`, as xlam builds it for that vocabulary and seed, on ``device``."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from xlam.utils.hydra import compose_config

    fields = dict(compose_config(["model=tiny", *SHAPES[shape]]).model.from_config)
    torch.manual_seed(seed)
    config = AutoConfig.for_model(**fields, vocab_size=vocab_size)
    with torch.device(device):
        return AutoModelForCausalLM.from_config(config, attn_implementation="sdpa")


def trl_args(spec: dict[str, Any], name: str) -> dict[str, Any]:
    """The ``TrainingArguments`` fields every TRL run of these benchmarks shares."""
    return {
        "output_dir": str(Path(spec["out"]) / name),
        "max_steps": spec["steps"],
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": [],
        "use_cpu": not spec["gpu"],
        "bf16": spec["gpu"],
        "dataloader_num_workers": 0,
        "seed": spec["seed"],
    }


def step_timer(steps: list[dict[str, float]], seen: dict[str, float]) -> Any:
    """A TRL ``TrainerCallback`` appending ``{"s", **seen}`` at every step end (``s``: the
    wall time since the previous step end, data loading included) and zeroing ``seen``."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        last: float | None = None

        def on_step_begin(self, *_: Any, **__: Any) -> None:
            self.last = self.last or time.perf_counter()

        def on_step_end(self, *_: Any, **__: Any) -> None:
            start, self.last = self.last or 0.0, time.perf_counter()
            steps.append({"s": self.last - start, **seen})
            seen.update(dict.fromkeys(seen, 0.0))

    return StepTimer()

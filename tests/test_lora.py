"""LoRA: per-family targets, adapters-only training and checkpoints, exact resume, export."""

from __future__ import annotations

from pathlib import Path

import hydra
import pytest
import torch
from conftest import QUIET, train_losses

from xlam.models.components.lora import (
    LORA_TARGET_PRESETS,
    LoraSettings,
    quantization_config,
    resolve_target_modules,
)
from xlam.train import train
from xlam.utils.hydra import compose_config

# Three steps of LoRA, a checkpoint each: the fixture's run and its resumed copy.
LORA_RUN = [
    *QUIET,
    "data.val_size=0",
    "data.batch_size=2",
    "model.lora.enabled=true",
    "trainer.max_steps=3",
    "callbacks.model_checkpoint.every_n_train_steps=1",
    "model.optimizer.lr=0.02",
]


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("lora")
    cfg = compose_config([*LORA_RUN, f"paths.log_dir={out}/logs"], output_dir=out / "run")
    _, objects = train(cfg)
    return out / "run", objects


def test_presets_by_family() -> None:
    for family in ("qwen2", "llama"):
        assert resolve_target_modules("auto", family) == [
            "q_proj",
            "k_proj",
            "v_proj",
            "o_proj",
            "gate_proj",
            "up_proj",
            "down_proj",
        ]
    assert set(LORA_TARGET_PRESETS) >= {"qwen2", "qwen3", "llama", "mistral"}
    assert resolve_target_modules("all-linear", "whatever") == "all-linear"
    assert resolve_target_modules(["q_proj"], "qwen2") == ["q_proj"]
    with pytest.raises(ValueError, match="no LoRA target preset for model_type='gpt_neox'"):
        resolve_target_modules("auto", "gpt_neox")
    with pytest.raises(ValueError, match="r must be"):
        LoraSettings(r=0)


@pytest.mark.parametrize("family", ["qwen2", "llama"])
def test_only_adapters_train(family: str, tmp_path: Path) -> None:
    cfg = compose_config(
        ["model.lora.enabled=true", f"model.from_config.model_type={family}"], output_dir=tmp_path
    )
    module = hydra.utils.instantiate(cfg.model)
    module.configure_model()
    trainable = [n for n, p in module.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    for proj in LORA_TARGET_PRESETS[family]:
        assert any(f"{proj}.lora_A" in n for n in trainable), proj
    assert module.param_counts["trainable_params"] < module.param_counts["params"]


def test_qlora_needs_lora_and_cuda(tmp_path: Path) -> None:
    with pytest.raises(Exception, match=r"lora\.enabled=true"):
        hydra.utils.instantiate(
            compose_config(["model.quantization=nf4"], output_dir=tmp_path).model
        )
    with pytest.raises(ValueError, match="nf4"):
        quantization_config("int3")
    assert quantization_config(None) is None
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="needs a CUDA GPU"):
            quantization_config("nf4")


def test_lora_run_checkpoints_adapters_and_resumes(
    lora_run: tuple[Path, dict], tmp_path: Path
) -> None:
    run, _ = lora_run
    losses = train_losses(run)
    assert losses[2] < losses[0]
    ckpt = torch.load(
        run / "checkpoints" / "step000001.ckpt", map_location="cpu", weights_only=True
    )
    assert ckpt["state_dict"] and all("lora_" in k for k in ckpt["state_dict"])
    # Adapters-only checkpoint: the base is rebuilt, training continues exactly.
    cfg = compose_config(
        [
            *LORA_RUN,
            "export.enabled=false",
            f"ckpt_path={run / 'checkpoints' / 'step000001.ckpt'}",
            f"paths.log_dir={tmp_path}/logs",
        ],
        output_dir=tmp_path / "resumed",
    )
    train(cfg)
    again = train_losses(tmp_path / "resumed")
    assert sorted(again) == [1, 2]
    for step in (1, 2):
        assert abs(again[step] - losses[step]) < 1e-5


def test_lora_export_merged_equals_base_plus_adapter(lora_run: tuple[Path, dict]) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from xlam.models.components.build import build_causal_lm

    run, objects = lora_run
    hp = objects["module"].hparams
    merged = AutoModelForCausalLM.from_pretrained(run / "export")
    assert not any("lora" in n for n, _ in merged.named_parameters())
    base = build_causal_lm(
        None, merged.config.vocab_size, hp["from_config"], "float32", None, hp["seed"]
    )
    with_adapter = PeftModel.from_pretrained(base, run / "adapter")
    ids = torch.tensor([[3, 17, 42, 7, 99, 5]])
    with torch.no_grad():
        a = merged(ids).logits
        b = with_adapter(ids).logits
        trained = objects["module"].model(ids).logits
    assert torch.allclose(a, b, atol=1e-5)
    assert torch.allclose(a, trained, atol=1e-5)

"""The DeepSpeed config is derived from the run, overlaid by a user JSON, and checked."""

from __future__ import annotations

import json
from pathlib import Path

import hydra
import pytest
from conftest import leaves

from xlam.strategies import (
    DeepSpeedConfigConflict,
    XlamDeepSpeedStrategy,
    deepspeed_config,
    fsdp_strategy,
    merge_deepspeed_configs,
)
from xlam.utils.hydra import compose_config


def _cfg(**kw: object) -> dict:
    base = dict(
        stage=3,
        micro_batch_size=4,
        accumulate=8,
        world_size=16,
        gradient_clip=1.0,
        precision="bf16-mixed",
    )
    base.update(kw)
    return deepspeed_config(**base)  # type: ignore[arg-type]


def test_generated_config_has_no_auto_and_matches_the_run() -> None:
    cfg = _cfg(
        client={
            "optimizer": {"type": "torch.optim.AdamW", "params": {"lr": 1e-5}},
            "scheduler": {"name": "cosine"},
        }
    )
    assert all(v != "auto" for v in leaves(cfg).values())
    assert cfg["train_micro_batch_size_per_gpu"] == 4
    assert cfg["gradient_accumulation_steps"] == 8
    assert cfg["train_batch_size"] == 4 * 8 * 16
    assert cfg["gradient_clipping"] == 1.0
    assert cfg["bf16"] == {"enabled": True} and cfg["fp16"]["enabled"] is False
    assert cfg["zero_optimization"]["stage"] == 3
    assert cfg["client_optimizer"]["params"]["lr"] == 1e-5
    assert cfg["client_scheduler"] == {"name": "cosine"}
    fp32 = _cfg(precision="32-true", stage=2, offload_optimizer=True)
    assert not fp32["bf16"]["enabled"] and not fp32["fp16"]["enabled"]
    assert fp32["zero_optimization"]["offload_optimizer"]["device"] == "cpu"
    assert _cfg(precision="16-mixed")["fp16"]["initial_scale_power"] == 16
    with pytest.raises(ValueError, match="stage 3"):
        _cfg(stage=2, offload_parameters=True)


def test_user_overlay_adds_keys_and_agrees() -> None:
    merged = merge_deepspeed_configs(
        _cfg(),
        {
            "zero_optimization": {"stage3_prefetch_bucket_size": 1000, "stage": 3},
            "gradient_clipping": 1,
            "flops_profiler": {"enabled": False},
        },
    )
    assert merged["zero_optimization"]["stage3_prefetch_bucket_size"] == 1000
    assert merged["flops_profiler"] == {"enabled": False}
    # A value the run set explicitly (trainer.strategy.zero) is derived, not a default.
    with pytest.raises(DeepSpeedConfigConflict, match=r"trainer\.strategy\.zero\.sub_group_size"):
        merge_deepspeed_configs(
            _cfg(zero={"sub_group_size": 10}),
            {"zero_optimization": {"sub_group_size": 20}},
            derived={"zero_optimization.sub_group_size": "trainer.strategy.zero.sub_group_size"},
        )


@pytest.mark.parametrize(
    ("user", "needle"),
    [
        ({"gradient_accumulation_steps": 4}, r"gradient_accumulation_steps.*8.*trainer\.accum.*4"),
        ({"zero_optimization": {"stage": 2}}, r"zero_optimization\.stage.*3.*2"),
        ({"bf16": {"enabled": False}}, r"bf16\.enabled.*True.*trainer\.precision.*False"),
        ({"optimizer": {"type": "Adam"}}, r"optimizer.*model\.optimizer"),
        (
            {"zero_optimization": {"offload_param": {"device": "cpu"}}},
            r"offload_param.*None.*offload_parameters",
        ),
        ({"train_micro_batch_size_per_gpu": "auto"}, "auto"),
    ],
)
def test_conflicts_name_both_values(user: dict, needle: str) -> None:
    with pytest.raises(DeepSpeedConfigConflict, match=needle):
        merge_deepspeed_configs(_cfg(), user, "my.json")


def test_trainer_options_compose_and_build(tmp_path: Path) -> None:
    user = tmp_path / "ds.json"
    user.write_text(json.dumps({"zero_optimization": {"reduce_bucket_size": 1000}}))
    for option, stage in (
        ("deepspeed_zero2", 2),
        ("deepspeed_zero3", 3),
        ("deepspeed_zero3_offload", 3),
    ):
        cfg = compose_config(
            [f"trainer={option}", f"trainer.strategy.user_config={user}"], output_dir=tmp_path
        )
        strategy = hydra.utils.instantiate(cfg.trainer.strategy)
        assert isinstance(strategy, XlamDeepSpeedStrategy)
        assert strategy.stage == stage
        assert strategy.config_out == str(tmp_path.resolve() / "deepspeed_config.json")
    assert strategy.offload_optimizer and strategy.offload_parameters
    cfg = compose_config(["trainer=fsdp"], output_dir=tmp_path)
    fsdp = hydra.utils.instantiate(cfg.trainer.strategy)
    assert type(fsdp).__name__ == "FSDPStrategy"


def test_fsdp_wraps_decoder_layers_of_any_family() -> None:
    import torch

    strategy = fsdp_strategy(layer_suffixes=["DecoderLayer"])
    policy = strategy.kwargs["auto_wrap_policy"]

    class LlamaDecoderLayer(torch.nn.Module):
        pass

    assert policy(LlamaDecoderLayer(), recurse=False, nonwrapped_numel=0)
    assert not policy(torch.nn.Linear(2, 2), recurse=False, nonwrapped_numel=0)
    assert policy(torch.nn.Linear(2, 2), recurse=True, nonwrapped_numel=0)

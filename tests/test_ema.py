"""``callbacks.ema``: an exponential moving average of the weights, exact across resume."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import TINY_QWEN2, train_losses, train_small

from xlam.models.export import load_checkpoint_state
from xlam.utils.callbacks import EMA

DECAY = 0.5
EMA_ON = ["callbacks.ema.enabled=true", f"callbacks.ema.decay={DECAY}", "trainer.max_steps=3"]


def _every(n: int) -> str:
    return f"callbacks.model_checkpoint.every_n_train_steps={n}"


def _ckpt(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)


def test_the_average_is_exported_checkpointed_and_resumed_exactly(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    # a checkpoint every step: the training weights w1, w2, w3 and the average at each
    _, objects = train_small(tmp_path / "every", *EMA_ON, _every(1))
    assert any(isinstance(c, EMA) for c in objects["trainer"].callbacks)
    ckpts = [_ckpt(tmp_path / "every" / "checkpoints" / f"step00000{i}.ckpt") for i in (1, 2, 3)]
    w = [c["current_model_state"] for c in ckpts]
    average = ckpts[2]["state_dict"]
    # one update per optimizer step: the first copies w1, then avg <- d avg + (1 - d) w
    moved = 0
    for k, v in average.items():
        if not v.is_floating_point():
            continue
        want = DECAY**2 * w[0][k] + DECAY * (1 - DECAY) * w[1][k] + (1 - DECAY) * w[2][k]
        torch.testing.assert_close(v, want, msg=k)
        moved += not torch.equal(v, w[2][k])
    assert moved > 10  # the average is not the last weights
    # the run exports the average (the export of a checkpoint reads the same state_dict)
    exported = load_file(tmp_path / "every" / "export" / "model.safetensors")
    inner = load_checkpoint_state(tmp_path / "every" / "checkpoints" / "step000003.ckpt")
    assert exported.keys() <= inner.keys()
    for k, v in exported.items():
        torch.testing.assert_close(v, inner[k], rtol=0, atol=0, msg=k)

    # last.ckpt written after Lightning copied the average into the model keeps the
    # training weights beside it
    train_small(tmp_path / "end", *EMA_ON, _every(2))
    last = _ckpt(tmp_path / "end" / "checkpoints" / "last.ckpt")
    _assert_same(last["current_model_state"], w[2])
    _assert_same(last["state_dict"], average)

    # resumed from step 2: the same step 3, the same weights and the same average
    step2 = tmp_path / "end" / "checkpoints" / "step000002.ckpt"
    train_small(tmp_path / "resumed", *EMA_ON, _every(2), f"ckpt_path={step2}")
    assert train_losses(tmp_path / "resumed")[2] == pytest.approx(
        train_losses(tmp_path / "every")[2], abs=1e-6
    )
    again = _ckpt(tmp_path / "resumed" / "checkpoints" / "last.ckpt")
    for key in ("current_model_state", "state_dict"):
        for k, v in again[key].items():
            torch.testing.assert_close(v, last[key][k], rtol=1e-6, atol=1e-7, msg=k)


@pytest.mark.parametrize("kind", ["deepspeed", "fsdp"])
def test_a_sharding_strategy_is_refused(kind: str) -> None:
    from lightning.pytorch.strategies import DeepSpeedStrategy, FSDPStrategy

    cls = DeepSpeedStrategy if kind == "deepspeed" else FSDPStrategy
    trainer = SimpleNamespace(strategy=cls.__new__(cls))  # its type is what counts
    with pytest.raises(ValueError, match=f"one process or DDP, not {kind}"):
        EMA().setup(trainer, SimpleNamespace(hparams={}), "fit")


def test_quantized_weights_and_a_bad_decay_are_refused() -> None:
    from lightning.pytorch.strategies import SingleDeviceStrategy

    trainer = SimpleNamespace(strategy=SingleDeviceStrategy("cpu"))
    module = SimpleNamespace(hparams={"quantization": {"load_in_4bit": True}, **TINY_QWEN2})
    with pytest.raises(ValueError, match="cannot average quantized weights"):
        EMA().setup(trainer, module, "fit")
    with pytest.raises(ValueError, match=r"decay must be in \[0, 1\)"):
        EMA(decay=1.0)

"""Resuming restores every trainable parameter, or stops naming the keys that do not match.

LoRA checkpoints leave out the frozen base, so they load non-strictly; a renamed or missing
adapter (or ``modules_to_save`` copy) must still stop the run instead of training on from
its initial value. Plain (CPU/DDP) checkpoints and DeepSpeed module states are both checked.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import torch
from conftest import ENV, XLAM_TRAIN

from xlam.models.components.lora import TrainableStateMismatch, trainable_state_mismatch
from xlam.train import train
from xlam.utils.hydra import compose_config

LORA = [
    "extras.print_config=false",
    "trainer.enable_progress_bar=false",
    "callbacks.progress_bar=null",
    "callbacks.model_checkpoint.every_n_train_steps=1",
    "callbacks.model_checkpoint.save_top_k=0",
    "data.val_size=0",
    "data.batch_size=2",
    "trainer.max_steps=2",
    "export.enabled=false",
    "model.optimizer.lr=0.02",
    "model.lora.enabled=true",
    # lm_head trained in full next to the adapters (untied: peft copies the module)
    "model.from_config.tie_word_embeddings=false",
    "model.lora.modules_to_save=[lm_head]",
]
ADAPTER = "model.base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight"
HEAD = "model.base_model.model.lm_head.modules_to_save.default.weight"


def _train(out: Path, extra: list[str] = ()) -> dict:
    cfg = compose_config([*LORA, f"paths.log_dir={out}/logs", *extra], output_dir=out / "run")
    return train(cfg)[1]


@pytest.fixture(scope="module")
def lora_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("strict")
    _train(out)
    return out / "run" / "checkpoints" / "last.ckpt"


def _tampered(ckpt: Path, dest: Path, rename: dict[str, str | None]) -> Path:
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    sd = state["state_dict"]
    for old, new in rename.items():
        value = sd.pop(old)
        if new is not None:
            sd[new] = value
    torch.save(state, dest)
    return dest


def test_mismatch_rules() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    full = set(model.state_dict())
    # Full fine-tuning: every key is required, as in a strict load.
    assert trainable_state_mismatch(full, model) == ([], [])
    assert trainable_state_mismatch(full - {"0.bias"}, model) == (["0.bias"], [])
    # Frozen weights may be absent; trainable ones may not; foreign keys never.
    model[0].requires_grad_(False)
    assert trainable_state_mismatch({"1.weight", "1.bias"}, model) == ([], [])
    assert trainable_state_mismatch({"1.weight", "1.bias", "0.weight", "0.bias"}, model) == (
        [],
        [],
    )
    assert trainable_state_mismatch({"1.weight", "1.lora"}, model) == (["1.bias"], ["1.lora"])


def test_renamed_adapter_key_stops_the_resume(lora_ckpt: Path, tmp_path: Path) -> None:
    renamed = ADAPTER.replace("lora_A", "lora_X")
    bad = _tampered(lora_ckpt, tmp_path / "renamed.ckpt", {ADAPTER: renamed})
    with pytest.raises(TrainableStateMismatch) as err:
        _train(tmp_path, [f"ckpt_path={bad}"])
    msg = str(err.value)
    assert str(bad) in msg
    assert re.search(rf"1 missing keys .*: {re.escape(ADAPTER)};", msg), msg
    assert re.search(rf"1 unexpected keys .*: {re.escape(renamed)}\.", msg), msg


def test_missing_modules_to_save_key_stops_the_resume(lora_ckpt: Path, tmp_path: Path) -> None:
    bad = _tampered(lora_ckpt, tmp_path / "no_head.ckpt", {HEAD: None})
    with pytest.raises(TrainableStateMismatch, match=rf"1 missing keys .*{re.escape(HEAD)}"):
        _train(tmp_path, [f"ckpt_path={bad}"])


def test_clean_checkpoint_restores_adapters_exactly(lora_ckpt: Path, tmp_path: Path) -> None:
    saved = torch.load(lora_ckpt, map_location="cpu", weights_only=True)
    assert saved["global_step"] == 2
    sd = saved["state_dict"]
    assert ADAPTER in sd and HEAD in sd
    # Resumed at its last step: restored, nothing trained after.
    module = _train(tmp_path, [f"ckpt_path={lora_ckpt}"])["module"]
    now = module.state_dict()
    trainable = {f"model.{n}" for n, p in module.model.named_parameters() if p.requires_grad}
    assert trainable == set(sd)
    for k, v in sd.items():
        assert torch.equal(now[k], v), k
    assert sd[HEAD].ne(module.model.base_model.model.lm_head.original_module.weight).any()


def test_deepspeed_module_states_are_checked(tmp_path: Path) -> None:
    # ZeRO-2 on one CPU rank; the checkpoint is a folder whose model states DeepSpeed loads.
    run = tmp_path / "run"
    args = [
        XLAM_TRAIN,
        *LORA,
        "trainer=deepspeed_zero2",
        "trainer.devices=1",
        "trainer.precision=32-true",
        f"hydra.run.dir={run}",
    ]

    def launch(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*args, *extra], cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=400
        )

    first = launch()
    assert first.returncode == 0, first.stderr[-3000:]
    states = run / "checkpoints" / "last.ckpt" / "checkpoint" / "mp_rank_00_model_states.pt"
    ckpt = torch.load(states, map_location="cpu", weights_only=False)
    assert ADAPTER in ckpt["module"] and HEAD in ckpt["module"]
    renamed = ADAPTER.replace("lora_A", "lora_X")
    ckpt["module"][renamed] = ckpt["module"].pop(ADAPTER)
    torch.save(ckpt, states)
    bad = launch("ckpt_path=last")
    assert bad.returncode != 0
    assert "TrainableStateMismatch" in bad.stderr, bad.stderr[-3000:]
    line = next(x for x in bad.stderr.splitlines() if "TrainableStateMismatch: " in x)
    assert "DeepSpeed checkpoint" in line and "last.ckpt" in line
    assert f"1 missing keys (in the model, not in the checkpoint): {ADAPTER};" in line
    assert f"1 unexpected keys (in the checkpoint, not in the model): {renamed}." in line

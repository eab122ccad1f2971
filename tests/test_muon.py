"""``MuonAdamW`` (``model/optimizer=muon``): Muon on hidden matrices, AdamW on the rest.

Compared with ``torch.optim.Muon`` and ``torch.optim.AdamW`` built by hand on the same split
(bit-identical steps under one LR schedule), resumed from a state dict exactly, refused
where gradients are sharded, and trained through ``xlam-train``.
"""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch
from conftest import TINY_QWEN2, step_metrics, train_small

from xlam.models.components.build import build_causal_lm
from xlam.models.components.muon import MuonAdamW, is_hidden_matrix
from xlam.models.components.schedules import param_groups

KW = {"lr": 3e-3, "muon_lr": 0.02, "weight_decay": 0.1}


def _model() -> torch.nn.Module:
    return build_causal_lm(None, 256, from_config=TINY_QWEN2, seed=0)


def _loss(model: torch.nn.Module, step: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(step)
    ids = torch.randint(0, 256, (2, 24), generator=g)
    return model(input_ids=ids, labels=ids).loss


def _train(model: torch.nn.Module, opt: torch.optim.Optimizer, steps: range) -> None:
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (1 + s))
    for _ in range(steps.start):
        sched.step()
    for step in steps:
        opt.zero_grad()
        _loss(model, step).backward()
        opt.step()
        sched.step()


def test_the_split_and_the_steps_are_torchs_muon_and_adamw() -> None:
    ours, ref = _model(), _model()
    hidden = {n for n, p in ours.named_parameters() if is_hidden_matrix(n, p)}
    # the tiny Qwen2's attention and MLP matrices; the (tied) embedding stays with AdamW
    assert hidden and all(("layers." in n) for n in hidden)
    assert "model.embed_tokens.weight" not in hidden
    _train(ours, MuonAdamW(param_groups(ours, 0.1, named=True), **KW), range(4))

    def part(muon: bool) -> list[dict]:
        out = []
        for g in param_groups(ref, 0.1, named=True):
            ps = [p for n, p in g["params"] if (n in hidden) == muon]
            if ps:
                out.append({"params": ps, "weight_decay": g["weight_decay"]})
        return out

    opts = [
        torch.optim.Muon(part(True), lr=0.02, weight_decay=0.1),
        torch.optim.AdamW(part(False), lr=3e-3, betas=(0.9, 0.95)),
    ]
    scheds = [torch.optim.lr_scheduler.LambdaLR(o, lambda s: 1.0 / (1 + s)) for o in opts]
    for step in range(4):
        for o in opts:
            o.zero_grad()
        _loss(ref, step).backward()
        for o, s in zip(opts, scheds, strict=True):
            o.step()
            s.step()
    for (n, a), b in zip(ours.named_parameters(), ref.parameters(), strict=True):
        assert torch.equal(a, b), n
    # and Muon's updates are not AdamW's: the same run under AdamW alone ends elsewhere
    other = _model()
    _train(other, torch.optim.AdamW(param_groups(other, 0.1), lr=3e-3), range(4))
    name = sorted(hidden)[0]
    assert not torch.equal(
        dict(ours.named_parameters())[name], dict(other.named_parameters())[name]
    )


def test_a_state_dict_resumes_exactly() -> None:
    a = _model()
    opt_a = MuonAdamW(param_groups(a, 0.1, named=True), **KW)
    _train(a, opt_a, range(3))
    saved_model, saved_opt = copy.deepcopy(a.state_dict()), copy.deepcopy(opt_a.state_dict())
    _train(a, opt_a, range(3, 6))

    b = _model()
    b.load_state_dict(saved_model)
    opt_b = MuonAdamW(param_groups(b, 0.1, named=True), **KW)
    opt_b.load_state_dict(saved_opt)
    _train(b, opt_b, range(3, 6))
    for (n, x), y in zip(a.named_parameters(), b.parameters(), strict=True):
        assert torch.equal(x, y), n


def test_plain_parameters_are_refused() -> None:
    with pytest.raises(TypeError, match=r"\(name, parameter\) pairs"):
        MuonAdamW(param_groups(_model(), 0.1), **KW)


@pytest.mark.parametrize("kind", ["deepspeed", "fsdp"])
def test_sharded_gradients_are_refused(kind: str) -> None:
    from hydra.utils import instantiate
    from lightning.pytorch.strategies import DeepSpeedStrategy, FSDPStrategy

    from xlam.models.causal_lm import CausalLMModule
    from xlam.utils.hydra import compose_config

    cls = DeepSpeedStrategy if kind == "deepspeed" else FSDPStrategy
    cfg = compose_config(
        ["model/optimizer=muon", f"model.from_config={TINY_QWEN2}".replace("'", "")]
    )
    module: CausalLMModule = instantiate(cfg.model)
    module.configure_model()
    module._trainer = SimpleNamespace(strategy=cls.__new__(cls))  # only its type is read
    with pytest.raises(ValueError, match="needs whole gradients"):
        module.configure_optimizers()


def test_trains_through_xlam_train(tmp_path) -> None:
    args = [
        "model/optimizer=muon",
        "trainer.max_steps=6",
        "data.val_size=0",
        "export.enabled=false",
    ]
    train_small(tmp_path / "run", *args, "~callbacks.model_checkpoint")
    steps = step_metrics(tmp_path / "run")
    assert sorted(steps) == list(range(6))
    assert steps[5]["train/loss"] < steps[0]["train/loss"]

"""Speed options leave the loss unchanged: checkpointing policy, torch.compile, Liger kernels.

CPU: every checkpointing policy gives the losses and gradients of none and recomputes
exactly the layers it names; a compiled model trains to the eager losses (``slow``) with its
layers really compiled; ``model.kernels=liger`` is refused without CUDA. CUDA (``gpu``): the
first steps' losses with Liger, compile and checkpointing equal the plain path's in bf16.
"""

from __future__ import annotations

import sys
import types
from typing import Any

import pytest
import torch

from xlam import TINY_TOKENIZER_DIR
from xlam.data.labels import IGNORE_INDEX
from xlam.models.causal_lm import CausalLMModule
from xlam.models.components import kernels as K

LAYERS = 4
SMALL = {
    "model_type": "qwen2",
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": LAYERS,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
}


def _module(**kwargs: Any) -> CausalLMModule:
    module = CausalLMModule(
        tokenizer_path=str(TINY_TOKENIZER_DIR),
        from_config=kwargs.pop("from_config", SMALL),
        dtype="float32",
        attn_implementation="sdpa",
        seed=5,
        packing_check=False,
        **kwargs,
    )
    module.configure_model()
    return module.train()  # checkpointing only recomputes in training mode


def _batch(vocab: int, rows: int = 2, seq: int = 48, seed: int = 0) -> dict[str, torch.Tensor]:
    """Two packed rows of two samples each, the first third of each sample unsupervised."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (rows, seq), generator=g)
    half = seq // 2
    pos = torch.cat([torch.arange(half), torch.arange(seq - half)]).repeat(rows, 1)
    labels = ids.clone()
    labels[pos < 8] = IGNORE_INDEX
    return {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "position_ids": pos,
        "labels": labels,
    }


def _loss_and_grads(module: CausalLMModule, batch: dict) -> tuple[float, dict[str, torch.Tensor]]:
    module.zero_grad(set_to_none=True)
    out = module.model_step(batch)
    out["loss"].backward()
    grads = {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}
    return float(out["loss"].detach()), grads


# -- activation checkpointing --------------------------------------------------------------
def test_checkpointing_policy_values() -> None:
    assert K.checkpoint_every(False) == 0
    assert K.checkpoint_every(True) == 1
    assert K.checkpoint_every({"every": 3}) == 3
    for bad in ({"every": 0}, {"every": 1.5}, {"each": 2}, "yes", 2, {"every": True}):
        with pytest.raises(ValueError, match=r"model\.gradient_checkpointing"):
            K.checkpoint_every(bad)


@pytest.mark.parametrize(
    ("policy", "checkpointed"),
    [(True, [0, 1, 2, 3]), ({"every": 2}, [0, 2]), ({"every": 3}, [0, 3])],
    ids=["true", "every2", "every3"],
)
def test_checkpointing_policy_keeps_the_loss_and_recomputes_the_layers_it_names(
    policy: Any, checkpointed: list[int]
) -> None:
    plain = _module(gradient_checkpointing=False)
    module = _module(gradient_checkpointing=policy)
    batch = _batch(plain.model.config.vocab_size)
    ref_loss, ref_grads = _loss_and_grads(plain, batch)

    # The MLP is called inside the checkpointed forward: once in the forward, again when the
    # backward recomputes its layer (the layer's own hooks stay outside the recomputation).
    # A pre-hook: the recomputation stops as soon as the last saved tensor is rebuilt,
    # inside the MLP, so a hook after the MLP would not see it.
    calls = [0] * LAYERS
    layers = K.decoder_layers(module.model)
    assert len(layers) == LAYERS
    for i, layer in enumerate(layers):
        layer.mlp.register_forward_pre_hook(lambda *_, i=i: calls.__setitem__(i, calls[i] + 1))
    loss, grads = _loss_and_grads(module, batch)

    assert calls == [2 if i in checkpointed else 1 for i in range(LAYERS)]
    assert loss == pytest.approx(ref_loss, abs=1e-6)
    assert grads.keys() == ref_grads.keys()
    assert max(float((grads[k] - ref_grads[k]).abs().max()) for k in grads) < 1e-6


def test_checkpointing_twice_under_fsdp_is_refused() -> None:
    from xlam.strategies import fsdp_strategy

    module = CausalLMModule(
        tokenizer_path=str(TINY_TOKENIZER_DIR),
        from_config=SMALL,
        gradient_checkpointing=True,
        packing_check=False,
    )
    strategy = fsdp_strategy(activation_checkpointing=True)
    assert K.fsdp_checkpoints_blocks(strategy)
    assert not K.fsdp_checkpoints_blocks(fsdp_strategy(activation_checkpointing=False))
    module._trainer = types.SimpleNamespace(precision="32-true", strategy=strategy)
    with pytest.raises(ValueError, match=r"trainer\.strategy\.activation_checkpointing=false"):
        module.configure_model()


# -- Liger ---------------------------------------------------------------------------------
@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is the CPU's")
def test_liger_is_refused_without_cuda_naming_the_key() -> None:
    from xlam.utils.hydra import compose_config

    cfg = compose_config(["model=tiny", "model.kernels=liger"])
    assert cfg.model.kernels == "liger"
    with pytest.raises(RuntimeError, match=r"model\.kernels=liger needs a CUDA GPU.*kernels=null"):
        CausalLMModule(tokenizer_path=str(TINY_TOKENIZER_DIR), from_config=SMALL, kernels="liger")
    with pytest.raises(ValueError, match=r"model\.kernels must be null or liger"):
        K.check_kernels("flash")
    # A CPU trainer on a GPU machine: refused once the device is known (configure_model).
    with pytest.raises(RuntimeError, match="needs a CUDA GPU"):
        K.check_kernels("liger", device_type="cpu")


def test_liger_patch_keeps_our_loss(monkeypatch: pytest.MonkeyPatch) -> None:
    """Liger's fused linear cross-entropy and cross-entropy stay off: the loss is ours."""
    calls: list[dict[str, Any]] = []
    fake = types.ModuleType("liger_kernel.transformers.monkey_patch")
    fake.MODEL_TYPE_TO_APPLY_LIGER_FN = {"qwen2": None}
    fake._apply_liger_kernel_to_instance = lambda **kw: calls.append(kw)
    pkg = types.ModuleType("liger_kernel.transformers")
    pkg.monkey_patch = fake
    monkeypatch.setitem(sys.modules, "liger_kernel", types.ModuleType("liger_kernel"))
    monkeypatch.setitem(sys.modules, "liger_kernel.transformers", pkg)
    monkeypatch.setitem(sys.modules, "liger_kernel.transformers.monkey_patch", fake)
    model = types.SimpleNamespace(config=types.SimpleNamespace(model_type="qwen2"))
    K.apply_kernels(model, "liger")
    assert calls == [
        {
            "model": model,
            "rope": True,
            "rms_norm": True,
            "swiglu": True,
            "cross_entropy": False,
            "fused_linear_cross_entropy": False,
        }
    ]
    model.config.model_type = "gpt2"
    with pytest.raises(ValueError, match="no kernels for model_type 'gpt2'"):
        K.apply_kernels(model, "liger")


# -- torch.compile -------------------------------------------------------------------------
def test_compile_option_values() -> None:
    assert K.compile_options(False) is None
    assert K.compile_options(True) == {}
    assert K.compile_options({"mode": "max-autotune", "dynamic": False}) == {
        "mode": "max-autotune",
        "dynamic": False,
    }
    with pytest.raises(ValueError, match=r"model\.compile: unknown key\(s\) \['mod'\]"):
        K.compile_options({"mod": "default"})
    with pytest.raises(ValueError, match=r"model\.compile must be"):
        K.compile_options("yes")


def _train_steps(module: CausalLMModule, steps: int) -> tuple[list[float], dict[str, torch.Tensor]]:
    """AdamW steps on fixed batches: the losses and the first step's gradients."""
    opt = torch.optim.AdamW(module.parameters(), lr=3e-3)
    losses: list[float] = []
    first: dict[str, torch.Tensor] = {}
    for step in range(steps):
        opt.zero_grad(set_to_none=True)
        out = module.model_step(_batch(module.model.config.vocab_size, seed=step))
        out["loss"].backward()
        if step == 0:
            first = {n: p.grad.clone() for n, p in module.named_parameters()}
        opt.step()
        losses.append(float(out["loss"].detach()))
    return losses, first


@pytest.mark.slow
def test_compiled_layers_train_to_the_eager_losses() -> None:
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    tiny = {**SMALL, "num_hidden_layers": 2}
    eager = _module(from_config=tiny)
    # Inductor without SIMD code: half the C++ compile time on CI's 2 cores, same maths
    # (this tests equality, not speed); it also passes inductor options through model.compile.
    compiled = _module(from_config=tiny, compile={"options": {"cpp.vec_isa_ok": False}})
    # In place: no `_orig_mod.` wrapper, so checkpoints and exports keep their keys.
    assert compiled.state_dict().keys() == eager.state_dict().keys()
    assert K.compiled_layers(compiled.model) == 2 and K.compiled_layers(eager.model) == 0

    ref, ref_grads = _train_steps(eager, 3)
    got, grads = _train_steps(compiled, 3)

    # It really compiled (inductor graphs, no silent fallback to eager) and did not break.
    # One graph for both layers: compile time does not grow with depth.
    assert counters["stats"]["unique_graphs"] == 1, dict(counters["stats"])
    assert counters["inductor"], "inductor compiled nothing"
    assert not counters["graph_break"], dict(counters["graph_break"])
    # fp32: the same losses (here bit-identical) and first gradients, up to reassociation.
    assert got == pytest.approx(ref, abs=1e-5)
    assert max(float((grads[k] - ref_grads[k]).abs().max()) for k in grads) < 1e-5
    assert ref[-1] < ref[0]  # the steps trained

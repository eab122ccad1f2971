"""The chunked cross-entropy through the LM head equals the plain one."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from xlam.models.components.chunked_ce import chunked_cross_entropy


def _inputs(dtype: torch.dtype, bias: bool, n: int = 37, h: int = 16, v: int = 101):
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(n, h, generator=g).to(dtype).requires_grad_()
    weight = torch.randn(v, h, generator=g).to(dtype).requires_grad_()
    b = torch.randn(v, generator=g).to(dtype).requires_grad_() if bias else None
    targets = torch.randint(0, v, (n,), generator=g)
    upstream = torch.rand(n, generator=g)  # per-token weights, as a token mean / N gives
    return hidden, weight, b, targets, upstream


def _grads(loss: torch.Tensor, *tensors: torch.Tensor | None) -> list[torch.Tensor]:
    live = [t for t in tensors if t is not None]
    return list(torch.autograd.grad(loss, live))


@pytest.mark.parametrize("chunk", [1, 7, 37, 1000])
@pytest.mark.parametrize("bias", [False, True])
def test_chunked_equals_plain_in_loss_and_gradient(chunk: int, bias: bool) -> None:
    hidden, weight, b, targets, upstream = _inputs(torch.float32, bias)
    plain = F.cross_entropy(F.linear(hidden, weight, b).float(), targets, reduction="none")
    chunked = chunked_cross_entropy(hidden, weight, b, targets, chunk)
    assert chunked.dtype == torch.float32 and chunked.shape == plain.shape
    assert torch.allclose(chunked, plain, atol=1e-5)
    for got, want in zip(
        _grads((chunked * upstream).sum(), hidden, weight, b),
        _grads((plain * upstream).sum(), hidden, weight, b),
        strict=True,
    ):
        assert torch.allclose(got, want, atol=1e-5), (got - want).abs().max()


def test_chunked_matches_plain_in_bf16() -> None:
    # the logits are computed in the hidden dtype and upcast, as the plain path does
    hidden, weight, _, targets, upstream = _inputs(torch.bfloat16, False)
    plain = F.cross_entropy(F.linear(hidden, weight).float(), targets, reduction="none")
    chunked = chunked_cross_entropy(hidden, weight, None, targets, 5)
    assert torch.allclose(chunked, plain, atol=1e-5)
    for got, want in zip(
        _grads((chunked * upstream).sum(), hidden, weight),
        _grads((plain * upstream).sum(), hidden, weight),
        strict=True,
    ):
        assert got.dtype == torch.bfloat16
        assert torch.allclose(got.float(), want.float(), atol=2e-2, rtol=2e-2)


def test_a_frozen_head_gets_no_gradient() -> None:
    hidden, weight, _, targets, _ = _inputs(torch.float32, False)
    weight = weight.detach()
    chunked_cross_entropy(hidden, weight, None, targets, 4).sum().backward()
    assert hidden.grad is not None and weight.grad is None


def test_bad_chunk_is_refused() -> None:
    hidden, weight, _, targets, _ = _inputs(torch.float32, False)
    with pytest.raises(ValueError, match="chunk must be >= 1"):
        chunked_cross_entropy(hidden, weight, None, targets, 0)


def test_auto_turns_on_for_large_vocabularies(shared_fixtures, tmp_path) -> None:
    import hydra

    from xlam.utils.hydra import compose_config

    def module(tokenizer: str | None):
        extra = [f"model.tokenizer_path={tokenizer}"] if tokenizer else []
        m = hydra.utils.instantiate(compose_config(extra, output_dir=tmp_path).model)
        m.configure_model()
        return m

    qwen = module(str(shared_fixtures / "tokenizers" / "qwen2_5"))
    assert qwen.loss_head is not None and qwen.model.config.vocab_size > 150_000
    assert module(None).loss_head is None  # the tiny 2k vocabulary: logits are cheap

"""Packing: bins, the packed collate, equivalence with unpacked forward, resumable stream."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
import yaml
from conftest import TinyModules, first_samples

from xlam.data.collate import packed_collate, pad_collate
from xlam.data.packing import best_fit_decreasing, packing_efficiency
from xlam.data.render import IGNORE_INDEX
from xlam.models.components.metrics import per_sample_losses, per_source_losses

ROOT = Path(__file__).resolve().parents[1]


# -- best-fit decreasing -----------------------------------------------------------------
def test_bfd_places_every_item_within_capacity() -> None:
    rng = random.Random(0)
    lengths = [rng.randint(1, 900) for _ in range(500)] + [0, 0]
    bins = best_fit_decreasing(lengths, 1024)
    placed = sorted(i for b in bins for i in b)
    assert placed == list(range(500))  # zero-length items are left out
    assert all(sum(lengths[i] for i in b) <= 1024 for b in bins)
    assert all(b == sorted(b) for b in bins)
    assert bins == best_fit_decreasing(lengths, 1024)  # deterministic
    # Never more bins than needed by a lot: BFD is within 11/9 OPT + 1.
    assert len(bins) <= 11 / 9 * (sum(lengths) / 1024 + 1) + 1


def test_bfd_packs_short_samples_tightly() -> None:
    rng = random.Random(1)
    lengths = [rng.randint(30, 470) for _ in range(1000)]
    for cap in (4096, 8192):
        bins = best_fit_decreasing(lengths, cap)
        rows = [sum(lengths[i] for i in b) for b in bins]
        assert packing_efficiency(rows, 8) >= 0.95


def test_bfd_rejects_items_longer_than_a_bin() -> None:
    with pytest.raises(ValueError, match="capacity"):
        best_fit_decreasing([10, 2000], 1024)


# -- the packed collate --------------------------------------------------------------------
def _sample(n: int, first_label: int, sid: str, source: str = "s") -> dict:
    ids = list(range(1, n + 1))
    labels = [first_label, *ids[1:]]
    return {"id": sid, "source": source, "input_ids": ids, "labels": labels, "position": 0}


def test_packed_collate_layout() -> None:
    rows = [[_sample(3, 1, "a"), _sample(2, 1, "b")], [_sample(4, 1, "c")]]
    b = packed_collate(rows, pad_id=0)
    assert b["input_ids"].shape == (2, 5)
    assert b["position_ids"].tolist() == [[0, 1, 2, 0, 1], [0, 1, 2, 3, 0]]
    assert b["sample_index"].tolist() == [[0, 0, 0, 1, 1], [2, 2, 2, 2, -1]]
    assert b["attention_mask"].tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]]
    # The first token of every sample is never a target (nothing of its own precedes it).
    assert b["labels"][0, 0] == b["labels"][0, 3] == b["labels"][1, 0] == IGNORE_INDEX
    assert b["labels"][1, 4] == IGNORE_INDEX
    assert b["cu_seqlens"].tolist() == [0, 3, 5, 9, 10]
    assert b["max_seqlen"] == 4
    assert b["ids"] == ["a", "b", "c"]


def test_padded_collate_has_the_same_keys() -> None:
    b = pad_collate([_sample(3, 1, "a"), _sample(2, 1, "b")], pad_id=0)
    assert b["sample_index"].tolist() == [[0, 0, 0], [1, 1, -1]]
    assert packed_collate([], 0)["input_ids"].shape == pad_collate([], 0)["input_ids"].shape


def test_transformers_detects_our_packed_layout() -> None:
    # The mechanism we rely on, in the installed transformers: restarting position ids
    # with attention_mask=None give one sequence index per packed sample.
    from transformers.masking_utils import find_packed_sequence_indices

    b = packed_collate([[_sample(3, 1, "a"), _sample(1, 1, "b"), _sample(2, 1, "c")]], 0)
    seq = find_packed_sequence_indices(b["position_ids"])
    assert seq is not None
    assert seq.tolist() == b["sample_index"].tolist()


# -- equivalence with unpacked forward ------------------------------------------------------
@pytest.fixture(scope="module")
def rendered(tiny_tokenizer) -> list[dict]:
    return [
        {
            "id": s.id,
            "source": name,
            "input_ids": s.input_ids,
            "labels": s.labels,
            "position": i,
        }
        for i, (name, s) in enumerate(first_samples(tiny_tokenizer))
    ]


def _tiny_model(vocab: int, attn: str) -> torch.nn.Module:
    from xlam.models.components.build import build_causal_lm

    cfg = yaml.safe_load((ROOT / "conf" / "model" / "default.yaml").read_text())["from_config"]
    return build_causal_lm(None, vocab, cfg, "float32", attn, 0).eval()


def _packed_vs_unpacked(
    model: torch.nn.Module, samples: list[dict], pad_id: int, device: str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Per-sample ``[loss sum, tokens]`` packed and alone, and the packed batch."""
    from xlam.models.causal_lm import token_losses

    bins = best_fit_decreasing([len(s["input_ids"]) for s in samples], 1024)
    rows = [[samples[i] for i in b] for b in bins]
    assert any(len(r) > 1 for r in rows)
    batch = packed_collate(rows, pad_id)
    flat = [s for r in rows for s in r]
    ids, pos = batch["input_ids"].to(device), batch["position_ids"].to(device)
    with torch.no_grad():
        if "flash" in model.config._attn_implementation:  # as CausalLMModule.forward does
            logits = model(
                input_ids=ids.reshape(1, -1), position_ids=pos.reshape(1, -1), use_cache=False
            ).logits.reshape(*ids.shape, -1)
        else:
            logits = model(input_ids=ids, position_ids=pos, use_cache=False).logits
        labels = batch["labels"].to(device)
        packed = per_sample_losses(
            token_losses(logits, labels), labels, batch["sample_index"].to(device), len(flat)
        )
        alone = torch.zeros_like(packed)
        for j, s in enumerate(flat):
            lab = torch.tensor([s["labels"]], device=device)
            one = model(input_ids=torch.tensor([s["input_ids"]], device=device)).logits
            alone[j, 0] = token_losses(one, lab).sum()
            alone[j, 1] = (lab[:, 1:] != IGNORE_INDEX).sum()
    return packed.cpu(), alone.cpu(), {**batch, "logits": logits.cpu()}


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_losses_equal_unpacked(rendered: list[dict], tiny_tokenizer, attn: str) -> None:
    from xlam.models.causal_lm import token_losses

    model = _tiny_model(len(tiny_tokenizer), attn)
    packed, alone, batch = _packed_vs_unpacked(model, rendered, tiny_tokenizer.pad_token_id)
    assert torch.equal(packed[:, 1], alone[:, 1])  # the same supervised tokens
    assert torch.allclose(packed[:, 0], alone[:, 0], rtol=1e-4, atol=1e-4), attn
    with torch.no_grad():  # a cache silently disables the packed mask: pass use_cache=False
        leaky = model(
            input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=True
        ).logits
    assert not torch.allclose(leaky, batch["logits"], atol=1e-3)
    by_source = per_source_losses(
        token_losses(batch["logits"], batch["labels"]),
        batch["labels"],
        batch["sample_index"],
        batch["sources"],
    )
    assert set(by_source) == {"chat", "fc_single", "multi_turn"}
    assert torch.allclose(sum(v[0] for v in by_source.values()), packed[:, 0].sum())


@pytest.mark.gpu
@pytest.mark.parametrize(
    ("attn", "dtype", "tol"),
    [
        ("sdpa", "float32", 1e-4),
        ("sdpa", "bfloat16", 2e-2),
        ("eager", "bfloat16", 2e-2),
        ("flash_attention_2", "bfloat16", 2e-2),
        ("xlam_segments", "bfloat16", 2e-2),
    ],
)
def test_packed_losses_equal_unpacked_on_cuda(
    rendered: list[dict], tiny_tokenizer, attn: str, dtype: str, tol: float
) -> None:
    import importlib.util

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    if "flash" in attn and importlib.util.find_spec("flash_attn") is None:
        pytest.skip("flash-attn is not installed")
    from xlam.models.components.build import build_causal_lm

    cfg = yaml.safe_load((ROOT / "conf" / "model" / "default.yaml").read_text())["from_config"]
    model = build_causal_lm(None, len(tiny_tokenizer), cfg, dtype, attn, 0).cuda().eval()
    packed, alone, _ = _packed_vs_unpacked(model, rendered, tiny_tokenizer.pad_token_id, "cuda")
    assert torch.equal(packed[:, 1], alone[:, 1])
    rel = ((packed[:, 0] - alone[:, 0]).abs() / alone[:, 0].abs().clamp(min=1e-6)).max()
    assert rel < tol, (attn, dtype, float(rel))


# Three rows of three samples each (lengths 33/265/149, 33/315/414, 265/416/469): every
# sample but the first of a row follows others, which a leaking mask would let it see.
FORWARD_ROWS = [[0, 3, 1], [2, 4, 7], [5, 8, 6]]


@pytest.fixture(scope="module")
def modules(tmp_path_factory: pytest.TempPathFactory) -> TinyModules:
    return TinyModules(tmp_path_factory.mktemp("modules"))


def _module_packed_vs_alone(module: torch.nn.Module, rendered: list[dict]) -> list[float]:
    """Max |logit difference| of every sample: packed rows vs the sample alone.

    Both through ``CausalLMModule.forward``, as training calls it: packed with the batch's
    accounting mask and its position ids, alone as a padded batch of one.
    """
    rows = [[rendered[i] for i in row] for row in FORWARD_ROWS]
    batch = packed_collate(rows, 0)
    diffs = []
    with torch.no_grad():
        packed = module(batch["input_ids"], batch["attention_mask"], batch["position_ids"])
        for k, s in enumerate(r for row in rows for r in row):
            ids = torch.tensor([s["input_ids"]])
            alone = module(ids, torch.ones_like(ids))[0]
            diffs.append(float((packed[batch["sample_index"] == k] - alone).abs().max()))
    return diffs


@pytest.mark.parametrize("attn", ["sdpa", "eager", "xlam_segments"])
def test_module_forward_uses_the_packed_mask(rendered: list[dict], modules, attn: str) -> None:
    diffs = _module_packed_vs_alone(modules[(f"model.attn_implementation={attn}",)], rendered)
    assert len(diffs) == 9
    assert max(diffs) < 1e-5, diffs  # every sample of every row, fp32


@pytest.mark.parametrize(
    ("leak", "attn"),
    [("use_cache", "sdpa"), ("no_position_ids", "sdpa"), ("no_position_ids", "xlam_segments")],
)
def test_module_forward_comparison_catches_a_leak(
    rendered: list[dict], modules, monkeypatch: pytest.MonkeyPatch, leak: str, attn: str
) -> None:
    # The comparison above must fail when the mask leaks: make the module's model run with
    # a KV cache (transformers then skips packed detection) or without the position ids.
    module = modules[(f"model.attn_implementation={attn}",)]
    forward = module.model.forward

    def leaking(*args, **kwargs):
        if leak == "use_cache":
            kwargs["use_cache"] = True
        else:
            kwargs.pop("position_ids", None)
        return forward(*args, **kwargs)

    monkeypatch.setattr(module.model, "forward", leaking)
    diffs = _module_packed_vs_alone(module, rendered)
    firsts = {0, 3, 6}  # a row's first sample sees only itself, leak or not
    assert all(diffs[k] < 1e-5 for k in firsts), diffs
    assert all(diffs[k] > 1e-2 for k in range(9) if k not in firsts), diffs


def test_a_model_without_mask_slicing_gets_full_logits(
    rendered: list[dict], modules, tmp_path: Path
) -> None:
    # Before transformers' slice_logits_to_keep (5.17 has none) a model indexes
    # hidden_states[:, keep, :], which a boolean (batch, seq) mask breaks: such a model must
    # train on full logits, with the losses of the sliced path.
    import hydra
    from transformers import Qwen2ForCausalLM
    from transformers.modeling_outputs import CausalLMOutputWithPast

    from xlam.models.causal_lm import supervised_positions
    from xlam.utils.hydra import compose_config

    class Qwen2Before517(Qwen2ForCausalLM):  # its module (this one) has no slicing helper
        def forward(self, input_ids=None, logits_to_keep=0, **kwargs):
            hidden = self.model(input_ids=input_ids, **kwargs).last_hidden_state
            keep = logits_to_keep
            keep = slice(-keep, None) if isinstance(keep, int) else keep
            return CausalLMOutputWithPast(logits=self.lm_head(hidden[:, keep, :]))

    sliced = modules[("model.chunked_loss=false",)]
    batch = packed_collate([[rendered[i] for i in row] for row in FORWARD_ROWS], 0)
    if not sliced.keeps_logits:
        pytest.skip("this transformers' Qwen2 slices no boolean mask: nothing to compare")
    with torch.no_grad():
        want = sliced.model_step(batch)["losses"]
    old = hydra.utils.instantiate(compose_config(["model.chunked_loss=false"], tmp_path).model)
    old.configure_model()
    old.eval().load_state_dict(sliced.state_dict())
    old.model.__class__ = Qwen2Before517
    assert not old.keeps_logits
    args = (batch["input_ids"], batch["attention_mask"], batch["position_ids"])
    with torch.no_grad(), pytest.raises(IndexError):
        old(*args, keep=supervised_positions(batch["labels"]))  # what keeping would do
    with torch.no_grad():
        got = old.model_step(batch)["losses"]
    assert torch.allclose(got, want, atol=1e-5)


def _step_and_grads(module, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    module.zero_grad(set_to_none=True)
    out = module.model_step(batch)
    out["loss"].backward()
    grads = {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}
    return out["losses"].detach(), grads


@pytest.mark.parametrize(
    ("path", "packed", "lora"),
    [
        ("supervised_logits", True, False),
        ("supervised_logits", False, True),
        ("chunked_loss", True, True),
        ("chunked_loss", False, False),
    ],
)
def test_loss_paths_give_the_losses_and_gradients_of_every_logit(
    rendered: list[dict], modules, packed: bool, lora: bool, path: str
) -> None:
    # model.supervised_logits projects only positions whose next token is supervised, and
    # model.chunked_loss computes their loss inside the LM head a few tokens at a time; the
    # per-token losses (monitors read them) and the gradients must be those of every logit.
    extra = ("model.lora.enabled=true",) if lora else ()
    chunked = "model.chunked_loss=true" if path == "chunked_loss" else "model.chunked_loss=false"
    # 7 tokens per chunk: the rows' supervised tokens span several chunks
    sparse = modules[(*extra, chunked, "model.loss_chunk_tokens=7")]
    dense = modules[(*extra, "model.supervised_logits=false")]
    assert sparse.keeps_logits and not dense.keeps_logits
    assert (sparse.loss_head is not None) == (path == "chunked_loss")
    assert dense.loss_head is None
    dense.load_state_dict(sparse.state_dict())
    rows = [[rendered[i] for i in row] for row in FORWARD_ROWS]
    if packed:
        batch = packed_collate(rows, 0)
    else:
        batch = pad_collate([s for row in rows for s in row], 0)
    keep_sum = int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
    if path == "supervised_logits":
        from xlam.models.causal_lm import supervised_positions

        args = (batch["input_ids"], batch["attention_mask"], batch.get("position_ids"))
        with torch.no_grad():
            kept = sparse(*args, keep=supervised_positions(batch["labels"]))
        assert kept.shape[0] == keep_sum < batch["input_ids"].numel() // 2
    losses_s, grads_s = _step_and_grads(sparse, batch)
    losses_d, grads_d = _step_and_grads(dense, batch)
    assert (losses_s > 0).sum() == keep_sum
    assert torch.allclose(losses_s, losses_d, atol=1e-5), (losses_s - losses_d).abs().max()
    assert grads_s.keys() == grads_d.keys() and grads_s
    for name, g in grads_s.items():
        assert torch.allclose(g, grads_d[name], atol=1e-6, rtol=1e-4), name
    # the head is a plain linear layer again outside the loss
    ids = batch["input_ids"][:1]
    with torch.no_grad():
        assert sparse(ids, torch.ones_like(ids)).shape[-1] == dense.model.config.vocab_size

"""``model.embed_tie``: ``Ġbook``'s embedding is ``book``'s plus a space vector (``space``);
``What``'s is ``what``'s plus a capital vector (``word``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import TINY_QWEN2, train_losses, train_small
from torch.nn.utils import parametrize

from xlam.models.components.build import build_causal_lm
from xlam.models.components.embed_tie import (
    apply_embed_tie,
    check_embed_tie,
    merge_embed_tie,
    space_pairs,
    word_groups,
)
from xlam.models.export import export_checkpoint, load_checkpoint_state

IDS = torch.tensor([[3, 17, 42, 7, 99, 5, 250, 11]])


def _tied(
    tokenizer, seed: int = 0, shared: bool = False, mode: str = "space"
) -> tuple[torch.nn.Module, object]:
    config = {**TINY_QWEN2, "tie_word_embeddings": shared}
    model = build_causal_lm(None, len(tokenizer), config, seed=seed)
    return model, apply_embed_tie(model, tokenizer, seed, mode)


def test_space_pairs_of_real_tokenizers(shared_fixtures: Path) -> None:
    from transformers import AutoTokenizer

    for name in ("qwen2_5", "llama3"):
        tok = AutoTokenizer.from_pretrained(shared_fixtures / "tokenizers" / name)
        spaced, roots = space_pairs(tok)
        assert len(spaced) > 10_000, name
        pairs = dict(zip(tok.convert_ids_to_tokens(spaced), roots, strict=True))
        assert pairs["Ġbook"] == tok.convert_tokens_to_ids("book")
        for s, r in zip(spaced[::97], roots[::97], strict=True):
            assert tok.decode([s]) == " " + tok.decode([r]), (s, r)


def _form(text: str) -> tuple[int, int, str]:
    """A decoded token's leading space, capital first letter and lower-cased rest."""
    spaced = int(text.startswith(" "))
    word = text[spaced:]
    return spaced, int(word != word.lower()), word.lower()


def test_word_groups_of_real_tokenizers(shared_fixtures: Path) -> None:
    from transformers import AutoTokenizer

    for name in ("qwen2_5", "llama3"):
        tok = AutoTokenizer.from_pretrained(shared_fixtures / "tokenizers" / name)
        tied, roots, space, capital = word_groups(tok)
        assert len(tied) > len(space_pairs(tok)[0]), name
        assert not set(tied) & set(roots)
        by_token = {t: k for k, t in enumerate(tok.convert_ids_to_tokens(tied))}
        for form, root, s, c in (("What", "what", 0, 1), ("ĠWhat", "what", 1, 1)):
            k = by_token[form]
            assert (tok.convert_ids_to_tokens(roots[k]), space[k], capital[k]) == (root, s, c)
        for k in range(0, len(tied), 53):
            (s1, c1, w1), (s0, c0, w0) = _form(tok.decode([tied[k]])), _form(tok.decode([roots[k]]))
            assert w1 == w0 and (space[k], capital[k]) == (s1 - s0, c1 - c0), (tied[k], roots[k])


def test_a_word_form_is_its_root_plus_its_directions(tiny_tokenizer) -> None:
    model, tie = _tied(tiny_tokenizer, mode="word")
    tied, roots, space, capital = (torch.tensor(x) for x in word_groups(tiny_tokenizer))
    assert capital.abs().sum() > 0 and (capital < 0).any()  # both ways
    w = model.get_input_embeddings().weight
    want = w[roots] + space[:, None] * tie.space + capital[:, None] * tie.capital
    torch.testing.assert_close(w[tied], want)
    plain = build_causal_lm(None, len(tiny_tokenizer), TINY_QWEN2, seed=0)
    others = torch.ones(len(tiny_tokenizer), dtype=torch.bool)
    others[tied] = False
    torch.testing.assert_close(w[others], plain.get_input_embeddings().weight[others])
    # what trains a form trains its root, and the directions by its coefficients
    merged, _ = _tied(tiny_tokenizer, mode="word")
    merge_embed_tie(merged)
    ids = torch.cat([tied[:: max(1, len(tied) // 12)], IDS[0]])[None]
    for m in (model, merged):
        logits = m(ids).logits[0, :-1]
        torch.nn.functional.cross_entropy(logits, ids[0, 1:]).backward()
    g = merged.get_input_embeddings().weight.grad
    raw = model.get_input_embeddings().parametrizations.weight.original.grad
    torch.testing.assert_close(raw, g.clone().index_add_(0, roots, g[tied]))
    torch.testing.assert_close(tie.space.grad, space.float() @ g[tied])
    torch.testing.assert_close(tie.capital.grad, capital.float() @ g[tied])


def test_a_spaced_row_is_its_bare_form_plus_the_space_vector(tiny_tokenizer) -> None:
    model, tie = _tied(tiny_tokenizer)
    spaced, roots = space_pairs(tiny_tokenizer)
    w = model.get_input_embeddings().weight
    torch.testing.assert_close(w[spaced], w[roots] + tie.space)
    # the tiny default's head is a matrix of its own: tied the same way, with its own space
    head = model.get_output_embeddings()
    head_space = head.parametrizations.weight[0].space
    torch.testing.assert_close(head.weight[spaced], head.weight[roots] + head_space)
    assert not torch.equal(head_space, tie.space)
    plain = build_causal_lm(None, len(tiny_tokenizer), TINY_QWEN2, seed=0)
    others = torch.ones(len(tiny_tokenizer), dtype=torch.bool)
    others[spaced] = False
    torch.testing.assert_close(w[others], plain.get_input_embeddings().weight[others])
    assert 0.5 < tie.space.std() / w[others].std() < 2


def test_what_trains_a_spaced_token_trains_its_bare_form(tiny_tokenizer) -> None:
    """The gradient of a raw row is its own plus that of its spaced form (the chain rule of
    the tie); the space vector's is the sum over every spaced row."""
    model, tie = _tied(tiny_tokenizer)
    spaced, roots = (torch.tensor(x) for x in space_pairs(tiny_tokenizer))
    merged, _ = _tied(tiny_tokenizer)  # the same seed: the same function, merged
    merge_embed_tie(merged)
    ids = torch.cat([spaced[:6], roots[:2], IDS[0]])[None]

    def loss(m: torch.nn.Module) -> torch.Tensor:
        logits = m(ids).logits[0, :-1]
        return torch.nn.functional.cross_entropy(logits, ids[0, 1:])

    loss(model).backward()
    loss(merged).backward()
    g = merged.get_input_embeddings().weight.grad  # the gradient of the tied matrix
    raw = model.get_input_embeddings().parametrizations.weight.original.grad
    torch.testing.assert_close(raw, g.clone().index_add_(0, roots, g[spaced]))
    torch.testing.assert_close(tie.space.grad, g[spaced].sum(0))
    assert raw[roots[:6]].abs().sum(1).min() > 0


@pytest.mark.parametrize("mode", ["space", "word"])
@pytest.mark.parametrize("shared", [True, False])
def test_merge_keeps_the_function_in_plain_matrices(
    tiny_tokenizer, shared: bool, mode: str
) -> None:
    model, tie = _tied(tiny_tokenizer, shared=shared, mode=mode)
    if shared:
        # one tie for both: the head computes the embedding's tied matrix
        assert model.get_output_embeddings().parametrizations.weight[0] is tie
        assert torch.equal(
            model.get_output_embeddings().weight, model.get_input_embeddings().weight
        )
    with torch.no_grad():
        before = model(IDS).logits
    assert merge_embed_tie(model)
    embed, head = model.get_input_embeddings(), model.get_output_embeddings()
    assert type(embed) is torch.nn.Embedding and type(head) is torch.nn.Linear
    assert (head.weight is embed.weight) == shared
    config = {**TINY_QWEN2, "tie_word_embeddings": shared}
    plain = build_causal_lm(None, len(tiny_tokenizer), config, seed=0)
    assert model.state_dict().keys() == plain.state_dict().keys()
    with torch.no_grad():
        torch.testing.assert_close(model(IDS).logits, before)
    assert not merge_embed_tie(model)


def test_refusals(tmp_path: Path, tiny_tokenizer) -> None:
    with pytest.raises(ValueError, match="must be one of"):
        check_embed_tie("subword", None)
    with pytest.raises(ValueError, match="holds trained embeddings"):
        check_embed_tie("space", str(tmp_path))

    class NoSpaces:
        def get_vocab(self) -> dict[str, int]:
            return {"a": 0, "b": 1, "Ġc": 2}

    model = build_causal_lm(None, 3, TINY_QWEN2)
    with pytest.raises(ValueError, match="no token that is a space plus another"):
        apply_embed_tie(model, NoSpaces())


@pytest.mark.parametrize("mode", ["space", "word"])
def test_a_tied_run_resumes_exactly_and_exports_one_plain_model(tmp_path: Path, mode: str) -> None:
    """The end-of-training export, the export of its checkpoint and that of a run resumed
    from step 1 are the same plain model; the resumed steps' losses are the first run's."""
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    tied = [f"model.embed_tie={mode}", "trainer.max_steps=3"]
    every = "callbacks.model_checkpoint.every_n_train_steps=1"
    _, objects = train_small(tmp_path / "run", *tied, every)
    # the export merged a copy: the module the run hands back keeps its tie
    embed = objects["module"].model.get_input_embeddings()
    assert parametrize.is_parametrized(embed, "weight")
    # the run trained the tie: its checkpoint holds the parametrization, not a plain matrix
    state = load_checkpoint_state(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert "model.embed_tokens.parametrizations.weight.0.space" in state
    assert "model.embed_tokens.weight" not in state
    step1 = tmp_path / "run" / "checkpoints" / "step000001.ckpt"
    train_small(tmp_path / "resumed", *tied, f"ckpt_path={step1}")
    losses, again = train_losses(tmp_path / "run"), train_losses(tmp_path / "resumed")
    assert sorted(again) == [1, 2]
    for step in (1, 2):
        assert abs(again[step] - losses[step]) < 1e-5
    end = tmp_path / "run" / "export"
    folders = [
        end,
        export_checkpoint(tmp_path / "run", "last", tmp_path / "again")["model"],
        tmp_path / "resumed" / "export",
    ]
    with safe_open(end / "model.safetensors", "pt") as f:
        assert not any("parametrizations" in k for k in f.keys())  # noqa: SIM118
    logits = []
    for folder in folders:
        model = AutoModelForCausalLM.from_pretrained(folder)
        assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
        with torch.no_grad():
            logits.append(model(IDS).logits)
    torch.testing.assert_close(logits[0], logits[1])
    torch.testing.assert_close(logits[0], logits[2], rtol=1e-5, atol=1e-5)
    # and the exports compute what the trained (still tied) module computes
    live = objects["module"].model.eval()
    with torch.no_grad():
        torch.testing.assert_close(logits[0], live(IDS).logits, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["deepspeed", "fsdp"])
def test_a_sharding_strategy_is_refused(kind: str) -> None:
    from types import SimpleNamespace

    from lightning.pytorch.strategies import DeepSpeedStrategy, FSDPStrategy

    from xlam import TINY_TOKENIZER_DIR
    from xlam.models.causal_lm import CausalLMModule

    cls = DeepSpeedStrategy if kind == "deepspeed" else FSDPStrategy
    module = CausalLMModule(
        from_config=TINY_QWEN2, tokenizer_path=TINY_TOKENIZER_DIR, embed_tie="space"
    )
    module._trainer = SimpleNamespace(strategy=cls.__new__(cls), precision=None)  # its type
    with pytest.raises(ValueError, match=f"one process or DDP, not {kind}"):
        module.configure_model()

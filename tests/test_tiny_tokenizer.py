"""``scripts/build_tiny_tokenizer.py``: the ``copy`` and ``words`` pre-tokenizations of the
learnability bench.

A value must be the same tokens wherever it is written (in a query, after a quote in a
call's JSON), numbers in chunks of up to three digits (``digits`` sets the chunk), and an
export with a Llama config must load the tokenizer with its own pattern (a Qwen2 one is
rebuilt as ``Qwen2Tokenizer``). ``words`` keeps a lower-case word's leading space and a
number's decimal point on it: a quoted text is one token a word, at the cost of an unquoted
lower-case word after a space.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import load_script
from transformers import AutoTokenizer, LlamaConfig, Qwen2Config

from xlam.synth.generate import generate


def _builder() -> Any:
    return load_script("build_tiny_tokenizer")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tok")
    (root / "data").mkdir()
    with (root / "data" / "train.jsonl").open("w") as f:
        for t in generate(300, 0):
            f.write(json.dumps(t) + "\n")
    out = {}
    for split in ("qwen2", "copy", "words"):
        _builder().build(root / split, 4096, root / "data", "signature", split)
        out[split] = root / split
    return out


def _span(tok: Any, text: str, value: str) -> list[str]:
    """The tokens of ``text`` that overlap ``value``'s characters in it."""
    start = text.index(value)
    enc = tok(text, return_offsets_mapping=True, add_special_tokens=False)
    ids = [
        i
        for i, (a, b) in zip(enc["input_ids"], enc["offset_mapping"], strict=True)
        if a < start + len(value) and b > start
    ]
    return tok.convert_ids_to_tokens(ids)


VALUES = ["P-84103", "/home/ingrid/notes", "wishlist", "2047-01-27", "AC-58118"]


@pytest.mark.parametrize("split", ["copy", "qwen2"])
def test_a_value_is_the_same_tokens_in_a_query_and_in_a_call(built: dict, split: str) -> None:
    tok = AutoTokenizer.from_pretrained(built[split])
    same = [
        _span(tok, f"Look up {v} now.", v) == _span(tok, json.dumps({"id": v}), v) for v in VALUES
    ]
    if split == "copy":
        assert all(same), same
    else:  # what the copy split is for: Qwen2's pattern glues a space or quote on
        assert same.count(False) >= 3, same


TEXT = "after shines night happy"


def test_words_copies_a_quoted_text_a_word_a_token(built: dict) -> None:
    query, call = f"Reverse '{TEXT}' now.", json.dumps({"text": TEXT})
    words = AutoTokenizer.from_pretrained(built["words"])
    assert _span(words, query, TEXT) == _span(words, call, TEXT)
    # each space starts a word's token; the copy split writes the three as tokens of their own
    assert "Ġ" not in _span(words, query, TEXT)
    assert _span(AutoTokenizer.from_pretrained(built["copy"]), query, TEXT).count("Ġ") == 3


def test_words_keeps_an_unquoted_value_the_same_unless_it_starts_lower_case(built: dict) -> None:
    tok = AutoTokenizer.from_pretrained(built["words"])
    for v in VALUES:
        same = _span(tok, f"Look up {v} now.", v) == _span(tok, json.dumps({"id": v}), v)
        # the split's cost: ` wishlist` in a query, `wishlist` after `"` in a call
        assert same == (not v[0].islower()), v


def test_words_puts_a_decimal_point_on_its_digits(built: dict) -> None:
    tok = AutoTokenizer.from_pretrained(built["words"])
    assert tok.tokenize("2113.34") == ["211", "3", ".34"]
    # a point alone ends a sentence, never a number's integer part
    assert tok.tokenize("of 58118.") == ["of", "Ġ", "581", "18", "."]
    assert all(f".{i:03d}" in tok.get_vocab() for i in range(1000))


def test_numbers_are_chunks_of_three_digits(built: dict) -> None:
    tok = AutoTokenizer.from_pretrained(built["copy"])
    assert tok.tokenize("58118") == ["581", "18"]
    assert tok.tokenize("2113.34") == ["211", "3", ".", "34"]
    assert all(f"{i:03d}" in tok.get_vocab() for i in range(1000))


def test_digits_sets_the_number_chunks(built: dict, tmp_path: Path) -> None:
    data = built["copy"].parent / "data"
    tok = _builder().build(tmp_path / "d2", 4096, data, "signature", "copy", digits=2)
    assert tok.tokenize("58118") == ["58", "11", "8"]
    assert tok.tokenize("2113.34") == ["21", "13", ".", "34"]
    assert all(f"{i:02d}" in tok.get_vocab() for i in range(100))
    assert "581" not in tok.get_vocab()
    with pytest.raises(ValueError, match="digits must be >= 1"):
        _builder().build(tmp_path / "d0", 4096, data, "signature", "copy", digits=0)


def test_a_llama_export_keeps_the_pattern_a_qwen2_one_loses(built: dict, tmp_path: Path) -> None:
    tok = AutoTokenizer.from_pretrained(built["copy"])
    for name, cfg in (("llama", LlamaConfig(vocab_size=4096)), ("qwen2", Qwen2Config())):
        tok.save_pretrained(tmp_path / name)
        cfg.save_pretrained(tmp_path / name)
    assert AutoTokenizer.from_pretrained(tmp_path / "llama").tokenize("58118") == ["581", "18"]
    assert AutoTokenizer.from_pretrained(tmp_path / "qwen2").tokenize("58118") != ["581", "18"]


def test_an_unknown_split_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="split must be one of"):
        _builder().build(tmp_path / "t", 512, tmp_path, "signature", "bpe")

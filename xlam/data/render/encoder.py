"""Token ids of many overlapping renders, fast and exactly: the piecewise encoder.

Prefix renders of one trajectory share almost all their text; :class:`TokenEncoder`
encodes each distinct piece between added tokens once. Also the prefix helpers on id
lists that the masking works with.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import weakref
from typing import Any

log = logging.getLogger(__name__)


def is_prefix(a: list[int], b: list[int]) -> bool:
    """Whether ``a`` is a prefix of ``b``."""
    return len(a) <= len(b) and b[: len(a)] == a


def lcp(a: list[int], b: list[int]) -> int:
    """Length of the longest common prefix (binary search on C-speed slice compares)."""
    lo, hi = 0, min(len(a), len(b))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


_PIECEWISE_NORMALIZERS = {"NFC", "NFD", "NFKC", "NFKD", "Lowercase", "Strip", "Replace"}
_PIECEWISE_PRETOKENIZERS = {
    "ByteLevel",
    "Split",
    "Digits",
    "Punctuation",
    "Whitespace",
    "WhitespaceSplit",
}


def _components_ok(spec: dict[str, Any] | None, allowed: set[str]) -> bool:
    if spec is None:
        return True
    if spec.get("type") == "Sequence":
        parts = spec.get("normalizers", spec.get("pretokenizers", []))
        return all(_components_ok(p, allowed) for p in parts)
    return spec.get("type") in allowed


def _spec_parts(serialized: str) -> tuple[Any, Any]:
    """The normalizer and pre-tokenizer of a serialized tokenizer, without parsing the
    (large) vocabulary: top-level keys come before ``model`` in the library's output."""
    decoder = json.JSONDecoder()
    pos = serialized.index('"added_tokens"')
    _, pos = decoder.raw_decode(serialized, serialized.index("[", pos))
    parts = []
    for key in ('"normalizer"', '"pre_tokenizer"'):
        at = serialized.index(key, pos)
        value, _ = decoder.raw_decode(serialized, serialized.index(":", at) + 1)
        parts.append(value)
    return parts[0], parts[1]


def _alternation(tokens: list[str]) -> re.Pattern[str] | None:
    # Longest first: at one position Python's alternation takes the first branch that
    # matches, which then is the longest, as in the library's leftmost-longest matching.
    toks = sorted(set(tokens), key=len, reverse=True)
    return re.compile("|".join(re.escape(t) for t in toks)) if toks else None


def _split_setup(backend: Any) -> tuple[Any, Any, dict[str, int]] | None:
    """Split patterns and ids of the added tokens, or None if piecewise is unsafe."""
    try:
        normalizer, pre_tokenizer = _spec_parts(backend.to_str())
    except (ValueError, AttributeError):
        return None
    if not _components_ok(normalizer, _PIECEWISE_NORMALIZERS):
        return None
    if not _components_ok(pre_tokenizer, _PIECEWISE_PRETOKENIZERS):
        return None
    identity = normalizer is None or (
        normalizer.get("type") == "Sequence" and not normalizer.get("normalizers")
    )
    raw, normalized, ids = [], [], {}
    for tid, tok in backend.get_added_tokens_decoder().items():
        if tok.lstrip or tok.rstrip or tok.single_word:
            return None
        if not tok.content:
            continue
        # The library matches normalized added tokens in a second pass, on normalized
        # text; mirrored only where normalizing changes nothing.
        if tok.normalized:
            if not identity:
                return None
            normalized.append(tok.content)
        else:
            raw.append(tok.content)
        ids[tok.content] = tid
    return _alternation(raw), _alternation(normalized), ids


# Per tokenizer object: building the patterns costs up to a second on big vocabularies.
_SPLIT_CACHE: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


class TokenEncoder:
    """Encodes many overlapping texts (prefixes of one render) fast and exactly.

    The ``tokenizers`` library cuts its input at added tokens and encodes the text between
    them independently. Prefix renders share almost all such pieces, so encoding each
    distinct piece once and concatenating gives the same ids as encoding every prefix in
    full, at a cost linear rather than quadratic in the number of turns. The shortcut is
    only taken for tokenizers where that independence holds (no stripping or
    word-boundary added tokens, position-independent normalizer and pre-tokenizer) and
    each trajectory's longest render is re-checked against the plain encoder
    (:meth:`verify`); any mismatch turns the shortcut off for good.

    Args:
        tokenizer: A Hugging Face tokenizer.
        cache: Allow the piecewise shortcut.
        max_cache: Pieces kept before the cache is cleared.
    """

    def __init__(self, tokenizer: Any, cache: bool = True, max_cache: int = 200_000) -> None:
        self.tokenizer = tokenizer
        self.max_cache = max_cache
        self._cache: dict[str, list[int]] = {}
        self._split: re.Pattern[str] | None = None
        self._split_normalized: re.Pattern[str] | None = None
        self._ids: dict[str, int] = {}
        self.piecewise = cache and self._setup()

    def _setup(self) -> bool:
        backend = getattr(self.tokenizer, "backend_tokenizer", None)
        if backend is None or getattr(backend, "encode_special_tokens", False):
            return False
        if getattr(self.tokenizer, "split_special_tokens", False):
            return False
        # Pieces must be encoded whole and unpadded, like the text they come from.
        if getattr(backend, "truncation", None) or getattr(backend, "padding", None):
            return False
        try:
            cached = _SPLIT_CACHE.get(self.tokenizer)
        except TypeError:  # an unhashable tokenizer class: no cache, same result
            cached = None
        if cached is None:
            cached = _split_setup(backend)
            with contextlib.suppress(TypeError):
                _SPLIT_CACHE[self.tokenizer] = cached
        if cached is None:
            return False
        self._split, self._split_normalized, self._ids = cached
        self._backend = backend
        return True

    def encode_exact(self, texts: list[str]) -> list[list[int]]:
        """Encode with the tokenizer itself (what ``apply_chat_template`` would do)."""
        if not texts:
            return []
        # The template already writes BOS where the model wants it.
        return list(self.tokenizer(texts, add_special_tokens=False)["input_ids"])

    def _pieces(self, text: str, pattern: re.Pattern[str] | None) -> list[tuple[str, bool]]:
        if pattern is None:
            return [(text, False)] if text else []
        out, pos = [], 0
        for m in pattern.finditer(text):
            if m.start() > pos:
                out.append((text[pos : m.start()], False))
            out.append((m.group(), True))
            pos = m.end()
        if pos < len(text):
            out.append((text[pos:], False))
        return out

    def _split_all(self, text: str) -> list[tuple[str, bool]]:
        pieces = self._pieces(text, self._split)
        if self._split_normalized is None:
            return pieces
        out: list[tuple[str, bool]] = []
        for piece, special in pieces:
            out.extend([(piece, True)] if special else self._pieces(piece, self._split_normalized))
        return out

    def encode(self, texts: list[str]) -> list[list[int]]:
        """Encode ``texts`` without adding special tokens."""
        # Someone else's call may have left truncation or padding set on the shared
        # backend; the tokenizer's own call resets them, so use it then.
        if not self.piecewise or self._backend.truncation or self._backend.padding:
            return self.encode_exact(texts)
        split = [self._split_all(t) for t in texts]
        missing = list({p for pieces in split for p, tok in pieces if not tok} - self._cache.keys())
        if missing:
            if len(self._cache) + len(missing) > self.max_cache:
                self._cache.clear()
            enc = self._backend.encode_batch(missing, add_special_tokens=False)
            self._cache.update(zip(missing, (e.ids for e in enc)))
        out = []
        for pieces in split:
            ids: list[int] = []
            for p, tok in pieces:
                if tok:
                    ids.append(self._ids[p])
                else:
                    ids.extend(self._cache[p])
            out.append(ids)
        return out

    def verify(self, text: str, ids: list[int]) -> bool:
        """Check piecewise ids of ``text`` against the plain encoder; disable on mismatch."""
        if not self.piecewise:
            return True
        if self.encode_exact([text])[0] == ids:
            return True
        log.warning(
            "piecewise encoding differs from the tokenizer for %s; using plain encoding",
            getattr(self.tokenizer, "name_or_path", "?"),
        )
        self.piecewise = False
        self._cache.clear()
        return False

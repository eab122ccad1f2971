"""On-disk cache of rendered, tokenized samples (Hugging Face ``datasets``, Arrow).

A source is rendered once per *key*: a hash of its files (path, size and mtime of each),
its name and format, the tokenizer (the content of its tokenizer files), the chat template
and the render options. The first run imports the trajectories into an Arrow dataset, then
renders them with ``Dataset.map`` (``num_proc`` processes) and saves the result under
``<cache_dir>/<source>-<key>``; every later run with the same key memory-maps it and starts
without tokenizing. Editing a data file, the template or an option changes the key, so a
stale entry is never read (old entries are left for the user to delete).

Writes are atomic: a build goes to a private temporary folder that is renamed into place,
so concurrent ranks or runs never see a half-written entry.

Small derived facts (record counts of streaming sources, bin counts of a packing plan) are
memoised as JSON files under ``<cache_dir>/memo``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from xlam.data.mixture import SourceSpec
from xlam.data.preference import PAIRS_FORMAT
from xlam.data.render import Renderer, RenderError, RenderOptions

log = logging.getLogger(__name__)

CACHE_VERSION = 2  # 2: spans column; errors name the renderer's problem kind
# Files of a tokenizer folder that change what it produces (never model weights).
_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "tokenizer.model",
    "spiece.model",
    "chat_template.jinja",
    "chat_template.json",
)
_MIN_ROWS_PER_PROC = 2000


def default_cache_dir() -> Path:
    """``$XLAM_CACHE``, else ``~/.cache/xlam``."""
    env = os.environ.get("XLAM_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "xlam"


def _digest(obj: Any) -> str:
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.blake2b(blob, digest_size=12).hexdigest()


def files_fingerprint(path: str | Path) -> list[tuple[str, int, int]]:
    """``(path, size, mtime_ns)`` of a file, or of every file under a folder.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
    """
    path = Path(path).resolve()
    if path.is_file():
        st = path.stat()
        return [(str(path), st.st_size, st.st_mtime_ns)]
    if not path.is_dir():
        raise FileNotFoundError(f"{path} does not exist")
    out = []
    for p in sorted(path.rglob("*")):
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts):
            st = p.stat()
            out.append((str(p), st.st_size, st.st_mtime_ns))
    return out


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """Hash of the tokenizer's files (content), class and chat template."""
    h = hashlib.blake2b(digest_size=12)
    h.update(type(tokenizer).__name__.encode())
    h.update((getattr(tokenizer, "chat_template", None) or "").encode())
    folder = Path(str(getattr(tokenizer, "name_or_path", "")))
    if folder.is_dir():
        for name in _TOKENIZER_FILES:
            f = folder / name
            if f.is_file():
                h.update(name.encode())
                h.update(f.read_bytes())
    else:  # not a local folder: fall back to what the loaded tokenizer says about itself
        h.update(str(folder).encode())
        h.update(json.dumps(tokenizer.get_vocab(), sort_keys=True).encode())
    return h.hexdigest()


def cache_key(spec: SourceSpec, tokenizer: Any, options: RenderOptions) -> str:
    """Key of a rendered source: data files, name, format, tokenizer, template, options."""
    return _digest(
        {
            "version": CACHE_VERSION,
            "name": spec.name,
            "format": spec.format,
            "files": files_fingerprint(spec.path),
            "tokenizer": tokenizer_fingerprint(tokenizer),
            "render": options.key(),
            # Only when set, so that the keys of sources without one stay as they were.
            **({"min_score": spec.min_score} if spec.min_score is not None else {}),
        }
    )


# -- rendering (runs in Dataset.map worker processes too) ---------------------------------
_RENDERERS: dict[tuple[str, str], tuple[Any, Renderer]] = {}


def _files_version(tokenizer_path: str) -> tuple[tuple[str, int, int], ...]:
    out = []
    for name in _TOKENIZER_FILES:
        try:
            st = (Path(tokenizer_path) / name).stat()
        except OSError:
            continue
        out.append((name, st.st_size, st.st_mtime_ns))
    return tuple(out)


def get_renderer(
    tokenizer_path: str, options: dict[str, Any], version: str | None = None
) -> Renderer:
    """The renderer of this process for a tokenizer folder and options.

    Built once per version of the folder: ``version`` (the tokenizer's fingerprint, as in
    the cache key) or else the size and mtime of its files. A tokenizer edited in place
    (notebook, sweep, test) is loaded again, so a new cache entry never holds samples of
    the old one.
    """
    key = (tokenizer_path, json.dumps(options, sort_keys=True))
    version = version or _files_version(tokenizer_path)
    if key not in _RENDERERS or _RENDERERS[key][0] != version:
        from transformers import AutoTokenizer

        # Never code from a tokenizer folder (auto_map): xlam runs no remote code.
        tok = AutoTokenizer.from_pretrained(tokenizer_path, trust_remote_code=False)
        _RENDERERS[key] = (version, Renderer(tok, RenderOptions(**options)))
    return _RENDERERS[key][1]


def render_rows(
    trajectories_json: list[str], renderer: Renderer, pairs: bool = False
) -> dict[str, list[Any]]:
    """Render trajectories (JSON) into sample rows.

    A trajectory the renderer skips (or cannot parse) becomes one row with ``length`` 0 and
    ``error`` = ``"<kind>: <detail>"``, ``kind`` being the renderer's problem name (one of
    :data:`~xlam.data.render.ERROR_KINDS`, or ``schema_error``), so counts per rule survive
    the cache. ``spans`` holds each sample's supervised spans, flattened
    (``[a0, b0, a1, b1, ...]``), for truncation that never trains on a cut turn.

    With ``pairs`` the records are preference pairs, each one sample of both halves
    (:func:`~xlam.data.render.pairs.render_pair`), and the rows have ``split`` and ``branch``
    columns.
    """
    from xlam.data.schema import SchemaError, Trajectory

    if pairs:
        from xlam.data.preference import PreferencePair
        from xlam.data.render.pairs import render_pair

        def render(text: str) -> list[Any]:
            got = render_pair(renderer, PreferencePair.from_json(text))
            return [got] if got is not None else []
    else:

        def render(text: str) -> list[Any]:
            return renderer.render(Trajectory.from_json(text))

    out: dict[str, list[Any]] = {
        "id": [],
        "input_ids": [],
        "labels": [],
        "spans": [],
        "length": [],
        "error": [],
        **({"split": [], "branch": []} if pairs else {}),
    }

    def failed(text: str, why: str) -> None:
        out["id"].append(str(json.loads(text).get("unique_trajectory_id", "")))
        out["input_ids"].append([])
        out["labels"].append([])
        out["spans"].append([])
        out["length"].append(0)
        out["error"].append(why)
        if pairs:
            out["split"].append(0)
            out["branch"].append(0)

    for text in trajectories_json:
        before = Counter(renderer.report.errors)
        try:
            samples = render(text)
        except RenderError as e:
            failed(text, f"{e.kind}: {e.detail}")
            continue
        except SchemaError as e:
            failed(text, f"schema_error: {e}")
            continue
        if not samples:
            kinds = sorted(renderer.report.errors - before)
            failed(text, render_failure(renderer, kinds, json.loads(text)))
        for s in samples:
            out["id"].append(s.id)
            out["input_ids"].append(s.input_ids)
            out["labels"].append(s.labels)
            out["spans"].append([x for span in s.spans for x in span])
            out["length"].append(len(s.input_ids))
            out["error"].append("")
            if pairs:
                out["split"].append(s.split)
                out["branch"].append(s.branch)
    return out


def render_failure(renderer: Renderer, kinds: list[str], record: dict[str, Any]) -> str:
    """``"<kind>: <detail>"`` of a trajectory the renderer skipped (non-strict mode).

    Args:
        renderer: The renderer (its report keeps the first examples of each kind).
        kinds: Error kinds its report counted for this trajectory (one: it stops at the
            first problem).
        record: The trajectory.
    """
    kind = kinds[0] if kinds else "skipped"
    traj_id = str(record.get("unique_trajectory_id", ""))
    detail = next(
        (
            e.split(": ", 1)[1]
            for e in reversed(renderer.report.examples.get(kind, []))
            if e.startswith(f"{traj_id}: ")
        ),
        "",
    )
    return f"{kind}: {detail}" if detail else kind


def render_batch(
    batch: dict[str, list[Any]],
    tokenizer_path: str,
    options: dict[str, Any],
    version: str | None = None,
    pairs: bool = False,
) -> dict[str, list[Any]]:
    """``Dataset.map`` function: a batch of ``{json}`` rows to sample rows."""
    return render_rows(batch["json"], get_renderer(tokenizer_path, options, version), pairs)


def _trajectory_json(spec: dict[str, Any]) -> Iterator[dict[str, str]]:
    from xlam.data.sources import load_source

    for t in load_source(SourceSpec(**spec)):
        yield {"json": t.to_json()}


def _features(pairs: bool = False) -> Any:
    import datasets

    ints = datasets.List(datasets.Value("int32"))
    return datasets.Features(
        {
            "id": datasets.Value("string"),
            "input_ids": ints,
            "labels": ints,
            "spans": ints,
            "length": datasets.Value("int32"),
            "error": datasets.Value("string"),
            **(
                {"split": datasets.Value("int32"), "branch": datasets.Value("int32")}
                if pairs
                else {}
            ),
        }
    )


# -- access ------------------------------------------------------------------------------
class RenderedTable:
    """Fast random access to rendered samples held in an Arrow table (memory-mapped).

    Token ids are returned as numpy views of the Arrow buffers, never copied row by row.
    """

    def __init__(self, table: pa.Table) -> None:
        self.table = table
        self.lengths = table.column("length").to_numpy().astype(np.int64)
        self.errors = table.column("error")
        self._ids = table.column("id")
        self._tok = [self._flat(c) for c in table.column("input_ids").chunks]
        self._lab = [self._flat(c) for c in table.column("labels").chunks]
        self._spans = [self._flat(c) for c in table.column("spans").chunks]
        sizes = [len(c) for c in table.column("input_ids").chunks]
        self._starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        # Preference pairs: where the rejected half starts, and the tokens of the chosen
        # half it continues (xlam.data.render.pairs).
        names = table.column_names
        self._split = table.column("split").to_numpy() if "split" in names else None
        self._branch = table.column("branch").to_numpy() if "branch" in names else None

    @staticmethod
    def _flat(chunk: pa.Array) -> tuple[np.ndarray, np.ndarray]:
        # Offsets account for a sliced chunk and index into the unsliced child values.
        return chunk.offsets.to_numpy(), chunk.values.to_numpy(zero_copy_only=False)

    def __len__(self) -> int:
        return len(self.lengths)

    def error_count(self) -> int:
        return int(np.count_nonzero(self.lengths == 0))

    def first_errors(self, n: int = 3) -> list[str]:
        return [e for e in self.errors.to_pylist()[: 10 * n + 100] if e][:n]

    def error_summary(self, max_examples: int = 5) -> dict[str, tuple[int, list[str]]]:
        """``{kind: (count, example ids)}`` of the trajectories that were not rendered."""
        rows = pa.array(np.flatnonzero(self.lengths == 0))
        out: dict[str, tuple[int, list[str]]] = {}
        for err, tid in zip(
            self.errors.take(rows).to_pylist(), self._ids.take(rows).to_pylist(), strict=True
        ):
            kind = (err or "skipped").split(":", 1)[0]
            n, ids = out.get(kind, (0, []))
            if len(ids) < max_examples:
                ids.append(tid)
            out[kind] = (n + 1, ids)
        return out

    def id(self, row: int) -> str:
        return self._ids[row].as_py()

    def spans(self, row: int) -> np.ndarray:
        """The supervised ``[start, end)`` spans of one row, shape ``(k, 2)``."""
        c = int(np.searchsorted(self._starts, row, side="right")) - 1
        offs, vals = self._spans[c]
        j = row - int(self._starts[c])
        return vals[int(offs[j]) : int(offs[j + 1])].reshape(-1, 2)

    def get(self, row: int) -> dict[str, Any]:
        """``{id, input_ids, labels}`` of one row (arrays are read-only views)."""
        c = int(np.searchsorted(self._starts, row, side="right")) - 1
        j = row - int(self._starts[c])
        offs, vals = self._tok[c]
        a, b = int(offs[j]), int(offs[j + 1])
        loffs, lvals = self._lab[c]
        la, lb = int(loffs[j]), int(loffs[j + 1])
        out = {"id": self._ids[row].as_py(), "input_ids": vals[a:b], "labels": lvals[la:lb]}
        if self._split is not None:
            out["split"] = int(self._split[row])
            # (caches of pairs written before branches existed: none)
            out["branch"] = int(self._branch[row]) if self._branch is not None else 0
        return out


@dataclass
class CacheInfo:
    """What loading a source did.

    Attributes:
        key: Cache key (``None`` when rendered in memory).
        path: Cache entry folder.
        hit: The entry existed: nothing was rendered.
        seconds: Time to load or build.
        read: Trajectories read from the source (after a ``min_score``).
        scores: With a source ``min_score``: what it kept and removed
            (:meth:`ScoreCounts.to_dict <xlam.data.scores.ScoreCounts.to_dict>`).
    """

    key: str | None
    path: str | None
    hit: bool
    seconds: float
    read: int
    scores: dict[str, Any] | None = None


def _auto_num_proc(rows: int, num_proc: int | None) -> int:
    if num_proc is not None:
        return max(1, num_proc)
    return max(1, min(os.cpu_count() or 1, rows // _MIN_ROWS_PER_PROC))


def score_counts(spec: SourceSpec) -> dict[str, Any] | None:
    """What the source's ``min_score`` keeps and removes (``None`` without one).

    Raises:
        MinScoreError: A trajectory was never judged (from
            :func:`~xlam.data.sources.filter_min_score`).
    """
    if spec.min_score is None:
        return None
    from xlam.data.scores import ScoreCounts
    from xlam.data.sources import filter_min_score, read_source

    counts = ScoreCounts(spec.min_score)
    for _ in filter_min_score(read_source(spec), spec, counts):
        pass
    return counts.to_dict()


def render_source(
    spec: SourceSpec,
    tokenizer: Any,
    options: RenderOptions,
    cache_dir: str | Path | None,
    num_proc: int | None = None,
) -> tuple[RenderedTable, CacheInfo]:
    """Rendered samples of a (non-streaming) source, from the cache when possible.

    Args:
        spec: The source.
        tokenizer: Loaded tokenizer (its folder is what worker processes load).
        options: Render options.
        cache_dir: Cache root; ``None`` renders in memory without caching.
        num_proc: Rendering processes (``None``: one per 2000 trajectories, up to the CPUs).
    """
    from xlam.data.sources import load_source

    t0 = time.perf_counter()
    pairs = spec.format == PAIRS_FORMAT
    if cache_dir is None:
        renderer = Renderer(tokenizer, options)
        texts = [t.to_json() for t in load_source(spec)]
        table = pa.table(render_rows(texts, renderer, pairs)).cast(_features(pairs).arrow_schema)
        return RenderedTable(table), CacheInfo(
            None, None, False, time.perf_counter() - t0, len(texts), score_counts(spec)
        )
    import datasets

    root = Path(cache_dir)
    key = cache_key(spec, tokenizer, options)
    entry = root / f"{spec.name}-{key}"
    hit = entry.is_dir()
    if not hit:
        # A whole pass first: a trajectory never judged stops the run here with its own
        # message (inside the build, ``datasets`` would wrap it in a generic error).
        scores = score_counts(spec)
        if next(load_source(spec), None) is None:
            # Nothing to render (``datasets`` refuses an empty build); the caller says so.
            empty = _features(pairs).arrow_schema.empty_table()
            return RenderedTable(empty), CacheInfo(
                None, None, False, time.perf_counter() - t0, 0, scores
            )
        _build(spec, tokenizer, options, root, entry, num_proc, scores)
    meta = json.loads((entry / "xlam_meta.json").read_text())
    ds = datasets.load_from_disk(str(entry))
    info = CacheInfo(
        key, str(entry), hit, time.perf_counter() - t0, int(meta["read"]), meta.get("scores")
    )
    log.info(
        "source %s: %s cache %s (%.2fs)", spec.name, "hit" if hit else "built", entry, info.seconds
    )
    return RenderedTable(ds.data.table), info


def _build(
    spec: SourceSpec,
    tokenizer: Any,
    options: RenderOptions,
    root: Path,
    entry: Path,
    num_proc: int | None,
    scores: dict[str, Any] | None = None,
) -> None:
    import datasets

    tmp = root / f".build-{entry.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    try:
        raw = datasets.Dataset.from_generator(
            _trajectory_json,
            gen_kwargs={"spec": asdict(spec)},
            features=datasets.Features({"json": datasets.Value("string")}),
            cache_dir=str(tmp / "raw"),
        )
        nproc = _auto_num_proc(raw.num_rows, num_proc)
        rendered = raw.map(
            render_batch,
            batched=True,
            batch_size=64,
            remove_columns=["json"],
            fn_kwargs={
                "tokenizer_path": str(tokenizer.name_or_path),
                "options": asdict(options),
                "version": tokenizer_fingerprint(tokenizer),
                **({"pairs": True} if spec.format == PAIRS_FORMAT else {}),
            },
            features=_features(spec.format == PAIRS_FORMAT),
            num_proc=nproc if nproc > 1 else None,
            cache_file_name=str(tmp / "map" / "rendered.arrow"),
            desc=f"render {spec.name}",
        )
        final = tmp / "final"
        rendered.save_to_disk(str(final))
        (final / "xlam_meta.json").write_text(
            json.dumps(
                {
                    "source": asdict(spec),
                    "read": raw.num_rows,
                    "rows": rendered.num_rows,
                    "num_proc": nproc,
                    "created": time.time(),
                    "version": CACHE_VERSION,
                    **({"scores": scores} if scores is not None else {}),
                },
                indent=1,
            )
        )
        try:
            final.rename(entry)
        except OSError:
            if not entry.is_dir():  # not a lost race with another writer: a real failure
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def memo(
    cache_dir: str | Path | None, kind: str, key: dict[str, Any], compute: Callable[[], Any]
) -> Any:
    """``compute()``, remembered as JSON under ``<cache_dir>/memo/<kind>-<hash>.json``."""
    if cache_dir is None:
        return compute()
    path = Path(cache_dir) / "memo" / f"{kind}-{_digest(key)}.json"
    if path.is_file():
        return json.loads(path.read_text())["value"]
    value = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(json.dumps({"key": key, "value": value}, default=str))
    tmp.replace(path)
    return value


__all__ = [
    "CACHE_VERSION",
    "CacheInfo",
    "RenderedTable",
    "cache_key",
    "default_cache_dir",
    "files_fingerprint",
    "get_renderer",
    "memo",
    "render_failure",
    "render_source",
    "tokenizer_fingerprint",
]

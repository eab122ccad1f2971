"""The rendered-sample cache: hit on second setup, keyed by data, tokenizer and options."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from xlam import SAMPLE_DATA_DIR, TINY_TOKENIZER_DIR
from xlam.data import cache as cache_mod
from xlam.data.cache import default_cache_dir, files_fingerprint
from xlam.data.datamodule import TrajectoryDataModule


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    for name, n in (("fc_single", 24), ("chat", 16)):
        lines = (SAMPLE_DATA_DIR / f"{name}.jsonl").read_text().splitlines()[:n]
        (d / f"{name}.jsonl").write_text("\n".join(lines) + "\n")
    return d


def _dm(
    data_dir: Path, cache: Path | None, tok: Path = TINY_TOKENIZER_DIR, **kw
) -> TrajectoryDataModule:
    sources = {n: {"path": str(data_dir / f"{n}.jsonl")} for n in ("fc_single", "chat")}
    dm = TrajectoryDataModule(sources, str(tok), batch_size=2, cache_dir=cache and str(cache), **kw)
    dm.prepare()
    return dm


def _entries(cache: Path) -> dict[str, float]:
    return {
        str(p.relative_to(cache)): p.stat().st_mtime_ns
        for p in cache.rglob("*")
        if p.is_file() and "memo" not in p.parts
    }


def test_second_setup_hits_the_cache_without_rendering(data_dir: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = _dm(data_dir, cache)
    assert {i.hit for i in first.cache_info.values()} == {False}
    assert sorted(p.name.split("-")[0] for p in cache.iterdir() if p.name != "memo") == [
        "chat",
        "fc_single",
    ]
    before = _entries(cache)
    cache_mod._RENDERERS.clear()  # the renderers built by the first run

    second = _dm(data_dir, cache)
    assert {i.hit for i in second.cache_info.values()} == {True}
    assert not cache_mod._RENDERERS  # no renderer (so no tokenizing) in the second run
    assert _entries(cache) == before  # nothing written
    assert second.mixture_report()["chat"]["cache"] == "hit"
    for name in ("fc_single", "chat"):
        a, b = first.sources[name], second.sources[name]
        assert np.array_equal(a.lengths, b.lengths)
        for i in range(a.size):
            sa, sb = a.table.get(int(a.rows[i])), b.table.get(int(b.rows[i]))
            assert sa["id"] == sb["id"]
            assert np.array_equal(sa["input_ids"], sb["input_ids"])


def test_cached_samples_equal_in_memory_rendering(data_dir: Path, tmp_path: Path) -> None:
    mem = _dm(data_dir, None)
    disk = _dm(data_dir, tmp_path / "cache", num_proc=2)  # two map processes
    assert mem.mixture_report()["chat"]["cache"] == "off"
    for name in ("fc_single", "chat"):
        a, b = mem.sources[name], disk.sources[name]
        assert a.size == b.size > 0
        for i in range(a.size):
            sa, sb = a.table.get(int(a.rows[i])), b.table.get(int(b.rows[i]))
            assert (sa["id"], sa["input_ids"].tolist(), sa["labels"].tolist()) == (
                sb["id"],
                sb["input_ids"].tolist(),
                sb["labels"].tolist(),
            )


def _keys(dm: TrajectoryDataModule) -> dict[str, str | None]:
    return {k: v.key for k, v in dm.cache_info.items()}


def test_key_follows_data_tokenizer_and_options(data_dir: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    base = _keys(_dm(data_dir, cache))
    # Data: a changed file (size and mtime) gets a new key; the other source keeps its own.
    f = data_dir / "chat.jsonl"
    f.write_text(f.read_text() + f.read_text().splitlines()[0] + "\n")
    changed = _keys(_dm(data_dir, cache))
    assert changed["chat"] != base["chat"] and changed["fc_single"] == base["fc_single"]
    # Render options.
    opts = _keys(_dm(data_dir, cache, render={"mode": "per_turn"}))
    assert opts["fc_single"] != changed["fc_single"]
    # Tokenizer: the same files elsewhere share the key, an edited template does not.
    tok = tmp_path / "tok"
    shutil.copytree(TINY_TOKENIZER_DIR, tok)
    assert _keys(_dm(data_dir, cache, tok=tok)) == changed
    tpl = tok / "chat_template.jinja"
    tpl.write_text(tpl.read_text().replace("<|im_start|>", "<|im_start|> "))
    assert _keys(_dm(data_dir, cache, tok=tok))["chat"] != changed["chat"]


def test_cache_dir_defaults_and_env_override(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("XLAM_CACHE", raising=False)
    assert default_cache_dir() == Path.home() / ".cache" / "xlam"
    monkeypatch.setenv("XLAM_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    from xlam.utils.hydra import compose_config

    cfg = compose_config([], output_dir=tmp_path / "run")
    assert cfg.data.cache_dir == str(tmp_path / "c")


def test_fingerprint_sees_size_and_mtime(tmp_path: Path) -> None:
    f = tmp_path / "x.jsonl"
    f.write_text("a\n")
    fp = files_fingerprint(f)
    os.utime(f, ns=(1, 1))
    assert files_fingerprint(f) != fp
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "a.parquet").write_text("1")
    (tmp_path / "dir" / ".hidden").write_text("1")
    assert [Path(p).name for p, _, _ in files_fingerprint(tmp_path / "dir")] == ["a.parquet"]

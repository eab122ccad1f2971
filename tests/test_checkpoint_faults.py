"""Faults around saved state: a torn ``last.ckpt``, a full disk mid-save, a changed tokenizer.

* A truncated ``last.ckpt`` is never resumed from: ``ckpt_path=last`` falls back to the newest
  loadable checkpoint with a warning naming both; with none left, or for a checkpoint named
  explicitly, the error names the file (and the good one to use).
* ``ENOSPC`` while a checkpoint is written leaves the previous one in place and loadable,
  removes the partial file, and says the disk is full.
* Two runs sharing a render cache, the second with an edited tokenizer or template, render
  again: the second never reads (or writes) samples of the first tokenizer.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import train_small

from xlam import SAMPLE_DATA_DIR, TINY_TOKENIZER_DIR
from xlam.data.cache import render_source
from xlam.data.mixture import SourceSpec
from xlam.data.render import RenderOptions
from xlam.utils.checkpoint import CorruptCheckpointError, partial_path, resolve_ckpt_path

ARGS = [
    "callbacks.model_checkpoint.every_n_train_steps=2",
    "export.enabled=false",
    "logger=none",
]


def _train(root: Path, run: Path, *extra: str) -> dict[str, Any]:
    return train_small(run, *ARGS, *extra, log_dir=root / "logs")[1]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """A 3-step run: a periodic checkpoint at step 2 and last.ckpt at step 3."""
    root = tmp_path_factory.mktemp("faults")
    objects = _train(root, root / "run", "trainer.max_steps=3")
    names = sorted(p.name for p in (root / "run" / "checkpoints").iterdir())
    assert names == ["last.ckpt", "step000002.ckpt"]
    return root / "run", objects


def _copy_run(run: Path, to: Path) -> Path:
    shutil.copytree(run, to)
    return to


def _truncate(path: Path) -> None:
    # What a copy cut short or a node dying mid-write without atomic saves leaves.
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    os.utime(path)  # and it is the newest file


# -- a truncated last.ckpt -------------------------------------------------------------
def test_truncated_last_falls_back_to_newest_good_checkpoint(
    trained: tuple[Path, dict[str, Any]], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run = _copy_run(trained[0], tmp_path / "run")
    ckpts = run / "checkpoints"
    _truncate(ckpts / "last.ckpt")
    with caplog.at_level(logging.WARNING, logger="xlam.utils.checkpoint"):
        assert resolve_ckpt_path("last", ckpts, run) == str(ckpts / "step000002.ckpt")
    warning = caplog.text
    assert str(ckpts / "last.ckpt") in warning and str(ckpts / "step000002.ckpt") in warning
    assert "truncated" in warning
    # The run itself resumes from the good checkpoint and trains the lost step again.
    objects = _train(trained[0].parent, run, "trainer.max_steps=3", "ckpt_path=last")
    record = json.loads(Path(objects["run_record"]).read_text())
    assert record["resumed_from"] == str(ckpts / "step000002.ckpt")
    assert record["global_step"] == 3


def test_truncated_last_without_a_good_one_is_a_clear_error(
    trained: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    ckpts = tmp_path / "checkpoints"
    ckpts.mkdir()
    shutil.copy(trained[0] / "checkpoints" / "last.ckpt", ckpts / "last.ckpt")
    shutil.copy(trained[0] / "checkpoints" / "step000002.ckpt", ckpts / "step000002.ckpt")
    _truncate(ckpts / "step000002.ckpt")
    _truncate(ckpts / "last.ckpt")
    with pytest.raises(CorruptCheckpointError) as e:
        resolve_ckpt_path("last", ckpts)
    assert str(ckpts / "last.ckpt") in str(e.value)
    assert "no other loadable checkpoint" in str(e.value)


def test_truncated_checkpoint_named_explicitly_names_the_good_one(
    trained: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    ckpts = _copy_run(trained[0], tmp_path / "run") / "checkpoints"
    _truncate(ckpts / "step000002.ckpt")
    with pytest.raises(CorruptCheckpointError) as e:
        resolve_ckpt_path(str(ckpts / "step000002.ckpt"), ckpts)
    message = str(e.value)
    assert str(ckpts / "step000002.ckpt") in message and "truncated" in message
    assert str(ckpts / "last.ckpt") in message  # the newest loadable one beside it


# -- a full disk while a checkpoint is written -----------------------------------------
@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_disk_full_during_save_keeps_previous_checkpoint(
    trained: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    trainer = trained[1]["trainer"]
    ckpts = _copy_run(trained[0], tmp_path / "run") / "checkpoints"
    last = ckpts / "last.ckpt"
    before = torch.load(last, map_location="cpu", weights_only=True)
    # The temporary file the save writes is /dev/full: every write fails with ENOSPC, as
    # on a full filesystem (no mount needed).
    os.symlink("/dev/full", partial_path(last))
    with pytest.raises(OSError) as e:
        trainer.save_checkpoint(last)
    assert e.value.errno == errno.ENOSPC
    assert "disk full" in str(e.value) and str(last) in str(e.value)
    assert not os.path.lexists(partial_path(last))  # the partial file is removed
    after = torch.load(last, map_location="cpu", weights_only=True)  # still loadable
    assert after["global_step"] == before["global_step"] == 3
    for k, v in before["state_dict"].items():
        assert torch.equal(after["state_dict"][k], v)
    assert resolve_ckpt_path("last", ckpts) == str(last)


# -- a tokenizer or template changed between two runs sharing a cache ------------------
def _rows(tokenizer_dir: Path, spec: SourceSpec, cache: Path | None) -> tuple[list, bool]:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    table, info = render_source(spec, tok, RenderOptions(), cache)
    rows = [table.get(i) for i in range(len(table))]
    return [(r["id"], r["input_ids"].tolist(), r["labels"].tolist()) for r in rows], info.hit


def _edit_template(tok: Path) -> None:
    tpl = tok / "chat_template.jinja"
    tpl.write_text(tpl.read_text().replace("<|im_start|>system\n", "<|im_start|>system\nv2 "))


def _add_token(tok: Path) -> None:
    # "assistant" becomes one token: every assistant header tokenizes differently.
    spec = json.loads((tok / "tokenizer.json").read_text())
    added = spec["added_tokens"]
    added.append(
        {
            "id": max(a["id"] for a in added) + 1,
            "content": "assistant",
            "single_word": False,
            "lstrip": False,
            "rstrip": False,
            "normalized": False,
            "special": False,
        }
    )
    (tok / "tokenizer.json").write_text(json.dumps(spec))


@pytest.mark.parametrize("edit", [_edit_template, _add_token], ids=["template", "added_token"])
def test_changed_tokenizer_renders_again(tmp_path: Path, edit) -> None:
    data = tmp_path / "fc.jsonl"
    lines = (SAMPLE_DATA_DIR / "fc_single.jsonl").read_text().splitlines()[:12]
    data.write_text("\n".join(lines) + "\n")
    spec = SourceSpec(name="fc", path=str(data))
    tok, cache = tmp_path / "tok", tmp_path / "cache"
    shutil.copytree(TINY_TOKENIZER_DIR, tok)

    first, hit = _rows(tok, spec, cache)
    assert not hit and first
    edit(tok)  # same folder, same path: only its content says the tokenizer changed
    second, hit = _rows(tok, spec, cache)
    fresh, _ = _rows(tok, spec, None)  # rendered in memory by the edited tokenizer
    assert fresh != first, "the edit does not change the samples: the test proves nothing"
    assert not hit, "the edited tokenizer read the first run's cache entry"
    assert second == fresh, "the new cache entry holds samples of the old tokenizer"
    # A third run with the edited tokenizer reads what the second wrote.
    third, hit = _rows(tok, spec, cache)
    assert hit and third == fresh

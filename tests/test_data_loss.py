"""No silent data loss: losses are counted per rule, recorded, and stop the run past a limit."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from xlam import SAMPLE_DATA_DIR, TINY_TOKENIZER_DIR
from xlam.data.datamodule import TrajectoryDataModule
from xlam.data.losses import DataLossError
from xlam.data.render import IGNORE_INDEX, Renderer, RenderOptions, truncate_sample
from xlam.data.schema import Trajectory

TOK = str(TINY_TOKENIZER_DIR)
REFUSED = "render_error:no_assistant_turn"


def _records(name: str) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (SAMPLE_DATA_DIR / f"{name}.jsonl").read_text().splitlines()]


def _refused(n: int) -> list[dict[str, Any]]:
    """Valid trajectories the renderer refuses: nothing for the assistant to learn."""
    base = _records("fc_single")[0]
    return [
        {**base, "unique_trajectory_id": f"refused-{i}", "conversation": base["conversation"][:1]}
        for i in range(n)
    ]


def _long_call(n: int, words: int = 60) -> list[dict[str, Any]]:
    """Multi-turn trajectories whose second assistant turn is one long tool call."""
    out = []
    for i, base in enumerate(_records("multi_turn")[:n]):
        conv = json.loads(json.dumps(base["conversation"]))
        calls = [m for m in conv if m.get("tool_calls")]
        calls[1]["tool_calls"][0]["function"]["arguments"]["note"] = " ".join(
            f"w{k}" for k in range(words)
        )
        out.append({**base, "unique_trajectory_id": f"long-{i}", "conversation": conv})
    return out


def _write(path: Path, records: list[dict[str, Any]]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


def _dm(cache: Path, sources: dict[str, Any], **kw: Any) -> TrajectoryDataModule:
    kw.setdefault("packing", {"enabled": False})
    return TrajectoryDataModule(sources, TOK, cache_dir=str(cache), **kw)


def test_refused_records_above_the_limit_stop_before_training(cache: Path, tmp_path: Path) -> None:
    path = _write(tmp_path / "fc.jsonl", _records("fc_single") + _refused(4))
    with pytest.raises(DataLossError) as err:
        _dm(cache, {"fc": {"path": path}}).prepare()
    msg = str(err.value)
    assert f"source 'fc' ({path})" in msg
    assert f"{REFUSED}: 4 of 164 trajectories read" in msg  # rule, count, total
    assert "refused-0, refused-1, refused-2, refused-3" in msg  # example ids
    assert "max_drop_fraction=0.01" in msg
    assert "++data.sources.fc.max_drop_fraction=0.03" in msg  # the override that accepts it

    one = _write(tmp_path / "fc1.jsonl", _records("fc_single") + _refused(1))
    dm = _dm(cache, {"fc": {"path": one}})
    dm.prepare()  # 1/161 is within the default limit
    assert dm.mixture_report()["fc"]["dropped"] == {REFUSED: 1}


def test_accepted_losses_train_and_are_in_the_run_record(cache: Path, tmp_path: Path) -> None:
    import hydra

    from xlam.train import train
    from xlam.utils.hydra import compose_config

    path = _write(tmp_path / "fc.jsonl", _records("fc_single") + _refused(4))
    args = [
        "debug=fdr",
        f"data.sources.fc_single.path={path}",
        "~data.sources.multi_turn",
        "~data.sources.chat",
        f"data.cache_dir={cache}",
        f"paths.log_dir={tmp_path}/logs",
    ]
    with pytest.raises(DataLossError) as err:
        hydra.utils.instantiate(compose_config(args, output_dir=tmp_path / "a").data).prepare()
    (accept,) = re.findall(r"\+\+\S+=[\d.]+", str(err.value))
    assert accept == "++data.sources.fc_single.max_drop_fraction=0.03"
    _, objects = train(compose_config([*args, accept], output_dir=tmp_path / "run"))
    record = json.loads(Path(objects["run_record"]).read_text())
    fc = record["mixture"]["sources"]["fc_single"]
    assert fc["dropped"] == {REFUSED: 4}
    assert fc["examples"][REFUSED] == [f"refused-{i}" for i in range(4)]
    assert fc["max_drop_fraction"] == 0.03
    assert fc["read"] == 164 == fc["samples"] + fc["val"] + fc["unused"] + 4


def test_a_source_that_loses_everything_is_an_error_not_a_rebalance(
    cache: Path, tmp_path: Path
) -> None:
    good = _write(tmp_path / "fc.jsonl", _records("fc_single")[:40])
    bad = _write(tmp_path / "bad.jsonl", _refused(10))
    empty = _write(tmp_path / "empty.jsonl", [])
    for sources, match in (
        ({"bad": {"path": bad}}, r"source 'bad' .* loses or cuts 100\.00%"),
        ({"bad": {"path": bad, "streaming": True}}, r"source 'bad' .* first 10 records"),
        ({"empty": {"path": empty}}, r"source 'empty' .* no usable sample"),
        ({"empty": {"path": empty, "streaming": True}}, r"source 'empty' .* no usable sample"),
    ):
        with pytest.raises(DataLossError, match=match):
            _dm(cache, {"fc": {"path": good}, **sources}).prepare()
    # Only an explicit choice takes a source out of the mixture.
    for spec in ({"max_drop_fraction": 1.0}, {"epochs": 0}):
        dm = _dm(cache, {"fc": {"path": good}, "bad": {"path": bad, **spec}})
        dm.prepare()
        assert dm.plan == {"fc": 40, "bad": 0}


def test_streaming_losses_are_enforced_while_training(cache: Path, tmp_path: Path) -> None:
    # The first 100 records (judged before training) are clean; the losses come later.
    path = _write(tmp_path / "chat.jsonl", _records("chat") + _refused(10))
    src = {"chat": {"path": path, "streaming": True, "shuffle_buffer": 1}}
    dm = _dm(cache, src, batch_size=2)
    dm.prepare()
    assert dm.mixture_report()["chat"]["probe"]["dropped"] == {}
    with pytest.raises(DataLossError, match=r"(?s)streaming, counted while training.*refused-0"):
        for _ in dm.train_dataloader():
            pass
    ok = _dm(cache, {"chat": {**src["chat"], "max_drop_fraction": 0.1}}, batch_size=2)
    ok.prepare()
    ids = [i for b in ok.train_dataloader() for i in b["ids"]]
    assert len(ids) == 100
    rep = ok.mixture_report()["chat"]
    assert rep["read"] == 110 and rep["dropped"] == {REFUSED: 10}


def _supervised_runs(labels: np.ndarray) -> list[tuple[int, int]]:
    on = np.concatenate([[False], np.asarray(labels) != IGNORE_INDEX, [False]])
    edges = np.flatnonzero(on[1:] != on[:-1])
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def _assert_whole_turns(tok: Any, ids: Any, labels: Any, eot: set[int]) -> None:
    """Every supervised run ends with an end-of-turn token; no call is left open."""
    for a, b in _supervised_runs(labels):
        assert int(ids[b - 1]) in eot, tok.decode(list(ids[a:b]))
        text = tok.decode(list(ids[a:b]))
        assert text.count("<tool_call>") == text.count("</tool_call>"), text


@pytest.mark.parametrize("which", ["tiny", "qwen2_5"])
def test_truncation_never_supervises_a_cut_turn(which: str, shared_fixtures: Path) -> None:
    from transformers import AutoTokenizer

    path = TOK if which == "tiny" else shared_fixtures / "tokenizers" / which
    tok = AutoTokenizer.from_pretrained(path)
    renderer = Renderer(tok, RenderOptions(mode="all_turns"))
    (s,) = renderer.render(Trajectory.from_dict(_long_call(1, words=200)[0]))
    eot = renderer.end_of_turn_ids
    full = np.asarray(s.labels)
    assert any(b - a > 300 for a, b in s.spans)  # a long tool call to cut through
    for m in range(1, len(s.input_ids) + 1):
        t = truncate_sample(s.input_ids, s.labels, s.spans, m)
        whole = [(a, b) for a, b in s.spans if b <= m]
        want = np.full(m, IGNORE_INDEX)
        for a, b in whole:
            want[a:b] = full[a:b]
        assert np.array_equal(t.labels, want), m  # exactly the turns that fit
        assert t.lost_turns == len(s.spans) - len(whole)
        assert t.unsupervised_turns == sum(a < m < b for a, b in s.spans)
        _assert_whole_turns(tok, t.input_ids, t.labels, eot)


def test_truncate_policy_trains_whole_turns_only_and_counts(
    cache: Path, tmp_path: Path, tiny_tokenizer: Any
) -> None:
    records = _long_call(30)
    path = _write(tmp_path / "long.jsonl", records)
    renderer = Renderer(tiny_tokenizer, RenderOptions())
    m = 420  # inside the long call of every sample; the first turn ends before it
    for r in records:
        (s,) = renderer.render(Trajectory.from_dict(r))
        assert any(a < m < b for a, b in s.spans) and s.spans[0][1] < m
    dm = _dm(
        cache,
        {"long": {"path": path, "max_drop_fraction": 1.0}},
        max_length=m,
        overlong="truncate",
        val_size=2,
        batch_size=4,
    )
    dm.prepare()
    rep = dm.mixture_report()["long"]
    assert rep["truncated"] == 30 and rep["turns_unsupervised"] == 30 and rep["dropped"] == {}
    eot = renderer.end_of_turn_ids
    batches = list(dm.train_dataloader()) + list(dm.val_dataloader())
    assert sum(len(b["ids"]) for b in batches) == 30  # 28 train + 2 val, none lost
    for b in batches:
        for ids, labels in zip(b["input_ids"], b["labels"], strict=True):
            _assert_whole_turns(tiny_tokenizer, ids.tolist(), labels.numpy(), eot)
            assert (labels != IGNORE_INDEX).any()


def test_counts_in_equal_counts_out_plus_rejected(cache: Path, tmp_path: Path) -> None:
    fc = _records("fc_single")
    path = _write(tmp_path / "mix.jsonl", fc[:60] + _refused(3) + _long_call(20))
    for overlong in ("drop", "truncate"):
        dm = _dm(
            cache,
            {"mix": {"path": path, "size": 50, "max_drop_fraction": 1.0}},
            max_length=420,
            overlong=overlong,
            val_size=5,
        )
        dm.prepare()
        r = dm.mixture_report()["mix"]
        lost = sum(r["dropped"].values())
        assert r["read"] == 83 == r["samples"] + r["val"] + r["unused"] + lost
        assert r["rendered"] == 80 == r["samples"] + r["val"] + r["unused"] + lost - 3
        assert r["dropped"][REFUSED] == 3 and r["samples"] == 50
        if overlong == "drop":
            assert r["dropped"]["dropped_overlong"] == 20 and r["truncated"] == 0
        else:
            assert r["truncated"] == 20 and "dropped_overlong" not in r["dropped"]

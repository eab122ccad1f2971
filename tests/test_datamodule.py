"""The datamodule end to end: plan, overlong policy, streaming, exact resume through Lightning."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import pytest
import torch

from xlam import SAMPLE_DATA_DIR, TINY_TOKENIZER_DIR
from xlam.data.datamodule import TrajectoryDataModule, default_sources
from xlam.data.render import RenderError
from xlam.utils.hydra import compose_config

TOK = str(TINY_TOKENIZER_DIR)


def _dm(cache: Path, **kw: Any) -> TrajectoryDataModule:
    kw.setdefault("sources", default_sources(str(SAMPLE_DATA_DIR)))
    return TrajectoryDataModule(tokenizer_path=TOK, cache_dir=str(cache), **kw)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


def test_default_config_plans_the_run(tmp_path: Path, cache: Path) -> None:
    cfg = compose_config([f"data.cache_dir={cache}"], output_dir=tmp_path)
    dm = hydra.utils.instantiate(cfg.data)
    dm.prepare()
    report = dm.mixture_report()
    assert set(report) == {"fc_single", "multi_turn", "chat"}
    for rep in report.values():
        assert rep["planned"] == 2 * rep["size"]  # epochs: 2.0
        assert rep["samples"] == rep["size"] and rep["read"] == rep["size"] + rep["val"]
    assert sum(r["probability"] for r in report.values()) == pytest.approx(1.0, abs=1e-4)
    rows = dm.total_rows()  # packed bins
    assert dm.planned_steps() == rows // dm.batch_size >= 20
    assert dm.planned_steps(world_size=2, accumulate=3) == rows // (dm.batch_size * 6)


def test_max_steps_sizes_the_plan(cache: Path) -> None:
    grouped = {"enabled": False, "group_by_length": True}
    for packing in ({"enabled": False}, {"enabled": True, "seq_length": 1024}, grouped):
        dm = _dm(cache, batch_size=4, packing=packing)
        dm.prepare()
        dm.plan_for_steps(200, world_size=2)
        assert dm.total_rows() >= 200 * 4 * 2
        ratio = {k: v / dm.total_samples for k, v in dm.plan.items()}
        assert ratio["fc_single"] == pytest.approx(160 / 360, abs=1e-3)  # proportions kept


def test_overlong_samples_are_counted_never_silent(cache: Path) -> None:
    # max_drop_fraction=1.0 accepts the loss (the default stops: tests/test_data_loss.py)
    dropped = _dm(cache, max_length=300, overlong="drop", max_drop_fraction=1.0)
    dropped.prepare()
    rep = dropped.mixture_report()
    assert rep["multi_turn"]["dropped_overlong"] == 100  # all 408-462 tokens
    assert rep["multi_turn"]["size"] == 0 and rep["multi_turn"]["planned"] == 0
    assert 0 < rep["fc_single"]["dropped_overlong"] < 160
    cut = _dm(cache, max_length=300, overlong="truncate", max_drop_fraction=1.0)
    cut.prepare()
    cut.setup()
    assert cut.mixture_report()["multi_turn"]["truncated"] == 100
    batch = next(iter(cut.train_dataloader()))
    assert batch["input_ids"].shape[1] <= 300
    with pytest.raises(RenderError, match="max_length=300"):
        _dm(cache, max_length=300, overlong="error").prepare()


class Recorder(L.LightningModule):
    """Records the samples of every trained batch; learns nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.seen: list[list[tuple[str, str, int]]] = []

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        self.seen.append(list(zip(batch["sources"], batch["ids"], batch["positions"])))
        return (self.w * batch["attention_mask"].sum()).sum()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.0)


class _StopAfter(L.Callback):
    def __init__(self, steps: int) -> None:
        self.steps = steps

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.global_step >= self.steps:
            trainer.should_stop = True


def _fit(
    dm: TrajectoryDataModule,
    root: Path,
    max_steps: int,
    ckpt: str | None = None,
    every: int | None = None,
    stop_after: int | None = None,
) -> Recorder:
    cbs: list[L.Callback] = []
    if stop_after:
        # The plan is sized for max_steps: an interrupted run has the same max_steps.
        cbs.append(_StopAfter(stop_after))
    if every:
        cbs.append(
            L.pytorch.callbacks.ModelCheckpoint(
                dirpath=root, every_n_train_steps=every, save_top_k=-1, filename="{step}"
            )
        )
    trainer = L.Trainer(
        max_steps=max_steps,
        accelerator="cpu",
        devices=1,
        logger=False,
        callbacks=cbs,
        enable_checkpointing=bool(every),
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
        limit_val_batches=0,
        default_root_dir=root,
    )
    module = Recorder()
    trainer.fit(module, datamodule=dm, ckpt_path=ckpt)
    return module


RESUME_CASES = {
    "packed": {"packing": {"enabled": True, "seq_length": 1024, "window": 128}},
    "padded": {"packing": {"enabled": False}, "batch_size": 6},
    "grouped": {
        "packing": {"enabled": False, "group_by_length": True, "window": 14},
        "batch_size": 4,
    },
    "packed-workers": {
        "packing": {"enabled": True, "seq_length": 512, "window": 100},
        "num_workers": 2,
    },
    "streaming": {
        "packing": {"enabled": True, "seq_length": 1024, "window": 64},
        "sources": {
            "fc_single": {"path": str(SAMPLE_DATA_DIR / "fc_single.jsonl"), "weight": 0.6},
            "chat": {
                "path": str(SAMPLE_DATA_DIR / "chat.jsonl"),
                "weight": 0.4,
                "streaming": True,
                "shuffle_buffer": 16,
            },
        },
        "num_samples": 300,
    },
}


@pytest.mark.parametrize("case", list(RESUME_CASES))
def test_resume_through_the_trainer_continues_the_exact_stream(
    case: str, cache: Path, tmp_path: Path
) -> None:
    kw = {"batch_size": 2, **RESUME_CASES[case]}
    dm = _dm(cache, **kw)
    dm.prepare()
    steps = dm.planned_steps()
    assert steps >= 12
    full = _fit(_dm(cache, **kw), tmp_path / "full", steps).seen
    assert len(full) == steps
    flat = [s for b in full for s in b]
    assert len(set(flat)) == len(flat)  # nothing repeats within the run

    stop = 5
    first = _fit(_dm(cache, **kw), tmp_path / "a", steps, every=stop, stop_after=stop + 2).seen
    assert first[:stop] == full[:stop]
    ckpt = torch.load(tmp_path / "a" / f"step={stop}.ckpt", weights_only=False)
    state = ckpt["TrajectoryDataModule"]["stream"]
    assert state["step"] == stop  # the prefetched batches were not counted
    rest = _fit(
        _dm(cache, **kw), tmp_path / "b", steps, ckpt=str(tmp_path / "a" / f"step={stop}.ckpt")
    ).seen
    assert first[:stop] + rest == full  # none skipped, none repeated, same order
    if case == "streaming":
        assert Counter(s for s, _, _ in flat)["chat"] > 0


def test_resume_refuses_a_changed_data_config(cache: Path, tmp_path: Path) -> None:
    kw = {"batch_size": 2, "packing": {"enabled": True, "seq_length": 1024, "window": 128}}
    _fit(_dm(cache, **kw), tmp_path / "a", 3, every=3)
    changed = {**kw, "packing": {"enabled": True, "seq_length": 1024, "window": 256}}
    with pytest.raises(ValueError, match="cannot resume exactly"):
        _fit(_dm(cache, **changed), tmp_path / "b", 6, ckpt=str(tmp_path / "a" / "step=3.ckpt"))
    # grouped by length, a window's order depends on the rows of a micro-batch
    grouped = {"batch_size": 2, "packing": {"enabled": False, "group_by_length": True}}
    _fit(_dm(cache, **grouped), tmp_path / "c", 3, every=3)
    with pytest.raises(ValueError, match="rows_per_micro_batch"):
        _fit(
            _dm(cache, **{**grouped, "batch_size": 3}),
            tmp_path / "d",
            6,
            ckpt=str(tmp_path / "c" / "step=3.ckpt"),
        )


def test_streaming_source_is_deterministic_and_counted(cache: Path) -> None:
    src = RESUME_CASES["streaming"]
    a, b, c = (_dm(cache, batch_size=2, seed=s, **src) for s in (0, 0, 1))
    ids = []
    for dm in (a, b, c):
        dm.prepare()
        dm.setup()
        ids.append([i for batch in dm.train_dataloader() for i in batch["ids"]])
    assert ids[0] == ids[1] != ids[2]
    rep = a.mixture_report()["chat"]
    assert rep["streaming"] and rep["size"] == 100  # counted from the file
    assert rep["planned"] == 120  # weight 0.4 of 300


def test_packed_batches_carry_what_the_model_and_metrics_need(cache: Path) -> None:
    dm = _dm(cache, batch_size=2, packing={"enabled": True, "seq_length": 1024})
    dm.prepare()
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    assert batch["input_ids"].shape[0] == 2 and batch["input_ids"].shape[1] <= 1024
    for key in ("labels", "position_ids", "sample_index", "attention_mask", "cu_seqlens"):
        assert key in batch
    n = len(batch["ids"])
    assert n == len(batch["sources"]) == len(batch["positions"]) > 2
    assert int(batch["sample_index"].max()) == n - 1
    assert sum(batch["stream_state"]["seen"].values()) >= n


@pytest.mark.parametrize("packed", [True, False])
def test_pad_to_multiple_bounds_the_shapes_and_changes_no_loss(
    cache: Path, tmp_path: Path, packed: bool
) -> None:
    # data.packing.pad_to_multiple_of: every width a multiple (a packed run at seq_length
    # has one shape), the same samples in the same order, and the model's per-token losses
    # on the real tokens unchanged (the padding is a sequence of its own, never supervised).
    from xlam.utils.hydra import compose_config

    packing = {"enabled": packed, "seq_length": 1024}
    plain = _dm(cache, batch_size=2, packing=packing)
    padded = _dm(cache, batch_size=2, packing={**packing, "pad_to_multiple_of": 1024})
    batches = []
    for dm in (plain, padded):
        dm.prepare()
        dm.setup()
        it = iter(dm.train_dataloader())
        batches.append([next(it) for _ in range(3)])
    module = hydra.utils.instantiate(compose_config([], output_dir=tmp_path).model)
    module.configure_model()
    module.eval()
    for a, b in zip(*batches, strict=True):
        width = a["input_ids"].shape[1]
        assert b["input_ids"].shape[1] == 1024 > width
        assert a["ids"] == b["ids"]
        assert torch.equal(b["input_ids"][:, :width], a["input_ids"])
        assert torch.equal(b["labels"][:, width:], torch.full_like(b["labels"][:, width:], -100))
        with torch.no_grad():
            la, lb = module.model_step(a)["losses"], module.model_step(b)["losses"]
        assert torch.allclose(lb[:, : width - 1], la, atol=1e-5)
        assert not lb[:, width - 1 :].any()


def test_streaming_parquet_source(cache: Path, tmp_path: Path) -> None:
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = []
    for line in (SAMPLE_DATA_DIR / "fc_single.jsonl").read_text().splitlines():
        d = json.loads(line)
        d.pop("metadata", None)
        d["tools"] = json.dumps(d["tools"])  # heterogeneous schemas travel as JSON strings
        for m in d["conversation"]:
            for c in m.get("tool_calls") or []:
                c["function"]["arguments"] = json.dumps(c["function"]["arguments"])
        rows.append(d)
    path = tmp_path / "fc.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=32)
    src = {"fc": {"path": str(path), "streaming": True, "shuffle_buffer": 16}}
    dm = _dm(cache, sources=src, batch_size=1, packing={"enabled": False})
    dm.prepare()
    dm.setup()
    ids = [i for b in dm.train_dataloader() for i in b["ids"]]
    assert sorted(ids) == sorted(d["unique_trajectory_id"] for d in rows)  # one pass, no repeat
    assert ids != [d["unique_trajectory_id"] for d in rows]  # shuffled by the buffer

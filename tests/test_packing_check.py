"""The packing self-check: packed rows must give every sample the logits it has alone."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from conftest import TinyModules, first_samples

from xlam.data.collate import packed_collate
from xlam.models.causal_lm import CausalLMModule
from xlam.models.components.packing_check import (
    PackingLeakError,
    check_packed_forward,
    mixers_outside_attention,
    plan_rows,
    split_packed_batch,
)
from xlam.utils.hydra import compose_config


@pytest.fixture(scope="module")
def samples(tiny_tokenizer) -> list[list[int]]:
    """Real rendered samples of the three embedded sources (33 to ~470 tokens)."""
    return [list(s.input_ids) for _, s in first_samples(tiny_tokenizer)]


@pytest.fixture(scope="module")
def modules(tmp_path_factory: pytest.TempPathFactory) -> TinyModules:
    return TinyModules(tmp_path_factory.mktemp("modules"))


def _leaky(module: CausalLMModule, monkeypatch: pytest.MonkeyPatch, leak: str) -> None:
    """Make the module's packed forward leak as a KV cache or lost position ids would."""
    forward = module.model.forward

    def run(*args, **kwargs):
        if leak == "use_cache":
            kwargs["use_cache"] = True  # with a cache transformers skips packed detection
        else:
            kwargs.pop("position_ids", None)  # a plain causal mask over the whole row
        return forward(*args, **kwargs)

    monkeypatch.setattr(module.model, "forward", run)


# -- pure parts --------------------------------------------------------------------------
def test_plan_rows_packs_shortest_first_within_capacity() -> None:
    lengths = [50, 10, 0, 30, 20, 60, 5]
    rows = plan_rows(lengths, row_tokens=40, max_rows=2)
    assert rows == [[1, 4, 6], [3]]  # 10+20+5 then 30; 50 and 60 do not fit, 0 is skipped
    assert all(sum(lengths[i] for i in r) <= 40 for r in rows)
    assert plan_rows([100], 40) == []


def test_split_recovers_the_samples_of_a_packed_batch() -> None:
    def s(ids: list[int]) -> dict:
        return {"id": "x", "source": "s", "input_ids": ids, "labels": ids}

    batch = packed_collate([[s([5, 6, 7]), s([8, 9])], [s([1, 2, 3, 4])]], pad_id=0)
    assert split_packed_batch(batch) == [[5, 6, 7], [8, 9], [1, 2, 3, 4]]


# -- on the real tiny model --------------------------------------------------------------
@pytest.mark.parametrize(
    ("attn", "dtype"), [("sdpa", "float32"), ("eager", "float32"), ("sdpa", "bfloat16")]
)
def test_check_passes_on_the_tiny_model(modules, samples: list, attn: str, dtype: str) -> None:
    module = modules[(f"model.attn_implementation={attn}", f"model.dtype={dtype}")]
    torch_dtype = getattr(torch, dtype)
    result = check_packed_forward(module, samples, torch_dtype, attn, 1024)
    # The 8 shortest of 9, shortest first into rows of 1024: 33+33+149+265+265, 315+414.
    assert result.row_sizes == [5, 2]
    assert not result.failed and len(result.diffs) == 7
    assert result.max_diff < {"float32": 1e-5, "bfloat16": 5e-2}[dtype]


@pytest.mark.parametrize(
    ("attn", "dtype", "leak"),
    [
        ("sdpa", "float32", "use_cache"),
        ("eager", "float32", "use_cache"),
        ("sdpa", "float32", "no_position_ids"),
        ("sdpa", "bfloat16", "use_cache"),
    ],
)
def test_check_refuses_a_leaking_forward(
    modules, samples: list, monkeypatch: pytest.MonkeyPatch, attn: str, dtype: str, leak: str
) -> None:
    import transformers

    module = modules[(f"model.attn_implementation={attn}", f"model.dtype={dtype}")]
    _leaky(module, monkeypatch, leak)
    with pytest.raises(PackingLeakError) as err:
        check_packed_forward(module, samples, getattr(torch, dtype), attn, 1024)
    msg = str(err.value)
    assert f"attn_implementation='{attn}'" in msg
    assert f"transformers {transformers.__version__}" in msg
    assert f"torch {torch.__version__}" in msg
    # Every sample that follows another in its row is named; a row's first cannot leak.
    assert "5 of 7 samples" in msg and "sample " in msg and "max |diff|" in msg


def test_mixers_outside_attention_names_the_layers_a_mask_cannot_reach() -> None:
    from transformers import Lfm2Config, Qwen2Config

    lfm2 = Lfm2Config(num_hidden_layers=2, layer_types=["conv", "full_attention"])
    assert mixers_outside_attention(lfm2) == ["conv"]
    sliding = Qwen2Config(num_hidden_layers=2, use_sliding_window=True, sliding_window=8)
    assert mixers_outside_attention(sliding) == []
    assert mixers_outside_attention(object()) == []  # no layer_types: attention only


# -- wired into training -------------------------------------------------------------------
@pytest.fixture(scope="module")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("train_logs")  # one render cache for the runs below


def _leak_in_training(monkeypatch: pytest.MonkeyPatch) -> None:
    forward = CausalLMModule.forward

    def dropping_position_ids(self, input_ids, attention_mask, position_ids=None, keep=None):
        return forward(self, input_ids, attention_mask, None, keep)

    monkeypatch.setattr(CausalLMModule, "forward", dropping_position_ids)


def test_training_runs_the_check_without_changing_it(
    log_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from xlam.train import train

    short = [
        "trainer.max_steps=2",
        "data.val_size=0",
        "export.enabled=false",
        "logger=none",
        "callbacks=none",
        f"paths.log_dir={log_dir}",
    ]
    losses = {}
    for check in (True, False):
        cfg = compose_config([*short, f"model.packing_check={check}"], output_dir=tmp_path)
        assert cfg.data.packing.enabled
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="xlam.models.causal_lm"):
            metrics, _ = train(cfg)
        ran = [r.getMessage() for r in caplog.records if "packing check" in r.getMessage()]
        assert len(ran) == check, ran
        assert not ran or "equal their unpacked forward" in ran[0]
        losses[check] = metrics["train/loss"]
    # The second step's loss follows the first update: the check left weights, RNG and
    # data order alone.
    assert losses[True] == losses[False]


def test_training_refuses_a_leaking_forward(
    log_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from xlam.train import train

    _leak_in_training(monkeypatch)
    cfg = compose_config(["debug=fdr", f"paths.log_dir={log_dir}"], output_dir=tmp_path / "on")
    with pytest.raises(PackingLeakError, match="attn_implementation='sdpa'"):
        train(cfg)
    # model.packing_check=false: the same leaking run trains with a plausible loss.
    off = compose_config(
        ["debug=fdr", f"paths.log_dir={log_dir}", "model.packing_check=false"],
        output_dir=tmp_path / "off",
    )
    metrics, objects = train(off)
    assert objects["trainer"].global_step == 1 and torch.isfinite(
        torch.tensor(metrics["train/loss"])
    )


def test_training_names_a_convolution_as_what_packing_cannot_mask(
    log_dir: Path, tmp_path: Path
) -> None:
    """A real LFM2 (a short-convolution layer, then attention) leaks across packed rows."""
    from xlam.train import train

    lfm2 = [
        "debug=fdr",
        f"paths.log_dir={log_dir}",
        "model.from_config.model_type=lfm2",
        "+model.from_config.layer_types=[conv,full_attention]",
    ]
    packed = compose_config(lfm2, output_dir=tmp_path / "packed")
    with pytest.raises(PackingLeakError, match=r"'conv' layers mix each token") as err:
        train(packed)
    assert "data.packing.enabled=false" in str(err.value)
    unpacked = compose_config([*lfm2, "data.packing.enabled=false"], output_dir=tmp_path / "u")
    metrics, objects = train(unpacked)
    assert objects["trainer"].global_step == 1
    assert torch.isfinite(torch.tensor(metrics["train/loss"]))

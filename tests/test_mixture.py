"""Mixture recipes: ActionStudio semantics, weights, the typed schema, planned steps."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from xlam.data.mixture import (
    DataConfig,
    SourceSpec,
    plan_mixture,
    planned_steps,
    probabilities,
    register_configs,
    sources_from_config,
    validate_data_config,
)
from xlam.utils.hydra import CONF_DIR, compose_config

SIZES = {"a": 1000, "b": 300, "c": 50}


def _specs(**kw: dict) -> list[SourceSpec]:
    return [SourceSpec(name=n, path=f"/data/{n}.jsonl", **v) for n, v in kw.items()]


def test_epochs_give_size_times_epochs() -> None:
    specs = _specs(a={"epochs": 1.0}, b={"epochs": 2.5}, c={})  # c: 1 epoch by default
    plan = plan_mixture(specs, SIZES)
    assert plan == {"a": 1000, "b": 750, "c": 50}
    probs = probabilities(plan)
    assert probs["b"] == pytest.approx(300 * 2.5 / (1000 + 750 + 50))


def test_fractional_epochs_round_and_rescale_exactly() -> None:
    specs = _specs(a={"epochs": 0.3333}, b={"epochs": 1.5}, c={"epochs": 4.0})
    plan = plan_mixture(specs, SIZES)
    assert plan == {"a": 333, "b": 450, "c": 200}
    scaled = plan_mixture(specs, SIZES, num_samples=1001)
    assert sum(scaled.values()) == 1001
    for k in plan:  # same proportions, to within one sample
        assert abs(scaled[k] - 1001 * plan[k] / sum(plan.values())) < 1


def test_weights_split_num_samples_exactly() -> None:
    specs = _specs(a={"weight": 0.5}, b={"weight": 0.3}, c={"weight": 0.2})
    assert plan_mixture(specs, SIZES, num_samples=999) == {"a": 499, "b": 300, "c": 200}
    default_total = plan_mixture(specs, SIZES)
    assert sum(default_total.values()) == sum(SIZES.values())


def test_mixing_rules_and_bad_values_are_rejected() -> None:
    with pytest.raises(ValueError, match="pick one rule"):
        plan_mixture(_specs(a={"weight": 1.0}, b={"epochs": 1.0}), SIZES)
    with pytest.raises(ValueError, match="either epochs or weight"):
        _specs(a={"weight": 1.0, "epochs": 1.0})
    with pytest.raises(ValueError, match="epochs must be >= 0"):
        _specs(a={"epochs": -1.0})
    with pytest.raises(ValueError, match="sum to zero"):
        plan_mixture(_specs(a={"weight": 0.0}), SIZES)
    with pytest.raises(ValueError, match=r"unknown key.*epoch"):
        sources_from_config({"a": {"path": "x", "epoch": 2}})


def test_planned_steps() -> None:
    assert planned_steps(1000, batch_size=8) == 125
    assert planned_steps(1000, batch_size=8, world_size=2, accumulate=4) == 15
    assert planned_steps(3, batch_size=8) == 1


@pytest.mark.parametrize("option", ["default", "mixture_example"])
def test_every_data_option_validates_against_the_schema(option: str, tmp_path: Path) -> None:
    cfg = compose_config([f"data={option}"], output_dir=tmp_path)
    typed = validate_data_config(cfg.data)
    assert isinstance(typed, DataConfig)
    assert typed.sources
    if option == "mixture_example":
        assert typed.sources["chat"].streaming
        assert {s.weight is not None for s in typed.sources.values()} == {True}


def test_schema_names_the_offending_key(tmp_path: Path) -> None:
    cfg = compose_config(["+data.packing.seq_lenght=512"], output_dir=tmp_path)
    with pytest.raises(Exception, match="seq_lenght"):
        validate_data_config(cfg.data)
    # The typed schema is part of the data configs: a wrong type fails at compose time.
    with pytest.raises(Exception, match="batch_size"):
        compose_config(["data.batch_size=many"], output_dir=tmp_path)
    cfg = compose_config(["+data.sources.chat.weight=1.0"], output_dir=tmp_path)
    with pytest.raises(ValueError, match="either epochs or weight"):
        validate_data_config(cfg.data)
    cfg = compose_config(["data.max_length=4096"], output_dir=tmp_path)
    with pytest.raises(ValueError, match="must fit one bin"):
        validate_data_config(cfg.data)


def test_sources_can_be_added_and_replaced_from_the_command_line(tmp_path: Path) -> None:
    # A typed mapping would refuse new keys: researchers add a source with one override.
    cfg = compose_config(
        [
            "+data.sources.extra={path: /data/x.jsonl, format: sharegpt, epochs: 0.5}",
            "data.keep_samples=true",  # else a source of your own leaves the samples out
        ],
        output_dir=tmp_path,
    )
    typed = validate_data_config(cfg.data)
    assert typed.sources["extra"] == SourceSpec(
        name="extra", path="/data/x.jsonl", format="sharegpt", epochs=0.5
    )
    assert {"fc_single", "multi_turn", "chat"} < set(typed.sources)
    only = [f"~data.sources.{n}" for n in ("fc_single", "multi_turn", "chat")]
    cfg = compose_config([*only, "+data.sources.one.path=/data/y.jsonl"], output_dir=tmp_path)
    assert list(validate_data_config(cfg.data).sources) == ["one"]
    cfg = compose_config(["+data.sources.bad={path: x, epochs: lots}"], output_dir=tmp_path)
    with pytest.raises(ValueError, match=r"data\.sources\.bad.*lots"):
        validate_data_config(cfg.data)


def test_schema_is_registered_for_hydra() -> None:
    from hydra.core.config_store import ConfigStore

    register_configs()
    node = ConfigStore.instance().load("schema/data.yaml").node
    assert OmegaConf.get_type(node) is DataConfig
    assert (CONF_DIR / "data" / "mixture_example.yaml").is_file()


def test_native_format_source_streams_through_its_importer(shared_fixtures: Path) -> None:
    from xlam.data.formats import import_records
    from xlam.data.mixture import SourceSpec
    from xlam.data.sources import load_source

    path = shared_fixtures / "datasets" / "xlam_fc_60k" / "sample.json"
    spec = SourceSpec(name="fc60k", path=str(path), format="xlam_fc_60k")
    trajs = list(load_source(spec))
    good = [r for r, _, _ in import_records(path, "xlam_fc_60k") if not hasattr(r, "rule")]
    assert trajs and len(trajs) == len(good)
    assert {t.source for t in trajs} == {"fc60k"}

"""Model presets work out of the box; the model, trainer and render schemas catch typos.

Each family preset renders the embedded mixture with the real chat template of its family
(``shared/fixtures/tokenizers``) without losing a trajectory; the render options they need were
found by rendering that mixture with every option (``docs/training.md``).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from pathlib import Path

import hydra
import pytest
import torch
from omegaconf import OmegaConf

from xlam.data.losses import DataLossError
from xlam.data.mixture import RenderConfig
from xlam.data.render import RenderOptions
from xlam.models.components.schedules import build_scheduler, warmup_schedule
from xlam.utils.hydra import compose_config

# preset -> (fixture tokenizer, render options it must set, from_config.model_type)
PRESETS = {
    "qwen2_5_instruct": ("qwen2_5", {"tool_format": "template"}, "qwen2"),
    "qwen3": (
        "qwen3",
        {"tool_format": "template", "enable_thinking": True, "supervise_reasoning": True},
        "qwen3",
    ),
    "llama3": ("llama3", {"tool_format": "prompt"}, "llama"),
    "llama3_1_instruct": ("llama3_1", {"tool_format": "prompt"}, "llama"),
    "deepseek_v3": (
        "deepseek_v3",
        {"tool_format": "prompt", "arguments_as_string": True},
        "deepseek_v3",
    ),
    "xlam2": (None, {"tool_format": "template"}, "llama"),
}
QUIET = ["extras.print_config=false", "trainer.enable_progress_bar=false"]


def _smoke(preset: str, tokenizer: Path, *extra: str) -> list[str]:
    """A preset with a tiny random-initialised model on a real tokenizer, rendered in memory."""
    return [
        f"model={preset}",
        "model.path=null",
        f"model.tokenizer_path={tokenizer}",
        "data.cache_dir=null",
        *extra,
    ]


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_preset_sets_what_its_template_needs(preset: str, tmp_path: Path) -> None:
    _, render, model_type = PRESETS[preset]
    cfg = compose_config([f"model={preset}", "model.path=/models/x"], output_dir=tmp_path)
    got = OmegaConf.to_container(cfg.data.render)
    assert {k: got[k] for k in render} == render
    assert cfg.model.from_config.model_type == model_type
    assert cfg.model.tokenizer_path == cfg.data.tokenizer_path == "/models/x"


@pytest.mark.parametrize("preset", [p for p, (tok, _, _) in sorted(PRESETS.items()) if tok])
def test_preset_renders_the_default_mixture(preset: str, shared_fixtures, tmp_path) -> None:
    tokenizer = shared_fixtures / "tokenizers" / PRESETS[preset][0]
    cfg = compose_config(_smoke(preset, tokenizer), output_dir=tmp_path)
    dm = hydra.utils.instantiate(cfg.data)
    dm.prepare()  # raises DataLossError above 1% lost per source
    report = dm.mixture_report()
    for name, n in {"fc_single": 160, "multi_turn": 100, "chat": 100}.items():
        assert report[name]["read"] == n
        assert not [r for r in report[name]["dropped"] if r.startswith("render_error")], report


def test_llama3_1_in_its_own_format_stops_naming_the_rule(shared_fixtures, tmp_path) -> None:
    """The user's first try: the template refuses 76 of 160 parallel-call trajectories."""
    tokenizer = shared_fixtures / "tokenizers" / "llama3_1"
    over = _smoke("llama3_1_instruct", tokenizer, "data.render.tool_format=template")
    dm = hydra.utils.instantiate(compose_config(over, output_dir=tmp_path).data)
    with pytest.raises(DataLossError, match=r"fc_single") as e:
        dm.prepare()
    assert "render_error:template_error: 76 of 160" in str(e.value)


def test_tiny_llama3_1_smoke_run_trains(shared_fixtures, tmp_path) -> None:
    """``model=llama3_1_instruct model.path=null model.tokenizer_path=...`` trains a step."""
    from xlam.train import train

    tokenizer = shared_fixtures / "tokenizers" / "llama3_1"
    cfg = compose_config(_smoke("llama3_1_instruct", tokenizer, "debug=fdr", *QUIET), tmp_path)
    metrics, objects = train(cfg)
    assert objects["trainer"].global_step == 1 and torch.isfinite(
        torch.tensor(metrics["train/loss"])
    )
    assert type(objects["module"].model).__name__ == "LlamaForCausalLM"
    report = objects["datamodule"].mixture_report()
    assert report["fc_single"]["rendered"] >= 160


def test_missing_model_path_is_named(tmp_path: Path) -> None:
    cfg = compose_config(["model=qwen3"], output_dir=tmp_path)
    hydra.utils.instantiate(cfg.data)  # the data group does not hide the model's missing path
    with pytest.raises(Exception, match=r"Missing mandatory value: model\.path"):
        hydra.utils.instantiate(cfg.model)
    cfg = compose_config(["model=qwen3", "model.path=null"], output_dir=tmp_path)
    with pytest.raises(Exception, match=r"model\.path is not set.*model\.tokenizer_path"):
        hydra.utils.instantiate(cfg.model)


def test_every_render_option_is_listed_and_typed(tmp_path: Path) -> None:
    options = {f.name: f.default for f in dataclasses.fields(RenderOptions)}
    schema = {f.name: f.default for f in dataclasses.fields(RenderConfig)}
    assert schema == options
    cfg = compose_config([], output_dir=tmp_path)
    assert OmegaConf.to_container(cfg.data.render) == options


@pytest.mark.parametrize(
    ("node", "typo", "key"),
    [
        ("data", {"render": {"tool_fromat": "prompt"}}, "tool_fromat"),
        ("model", {"lora": {"rank": 4}}, "rank"),
        ("model", {"tiny_config": {"hidden_size": 8}}, "tiny_config"),  # renamed from_config
        ("trainer", {"max_step": 5}, "max_step"),
    ],
)
def test_a_typo_in_a_config_file_fails_at_compose(
    node: str, typo: dict, key: str, tmp_path: Path
) -> None:
    (tmp_path / "experiment").mkdir()
    body = OmegaConf.to_yaml({node: typo})
    (tmp_path / "experiment" / "typo.yaml").write_text(f"# @package _global_\n{body}")
    overrides = [f"hydra.searchpath=[file://{tmp_path}]", "experiment=typo"]
    with pytest.raises(Exception, match=f"Key '{key}' not in"):
        compose_config(overrides, output_dir=tmp_path / "run")


def test_trainer_schema_has_every_trainer_argument(tmp_path: Path) -> None:
    from lightning.pytorch import Trainer

    cfg = compose_config(["trainer.max_steps=7"], output_dir=tmp_path)
    args = set(inspect.signature(Trainer.__init__).parameters) - {"self"}
    assert args <= set(cfg.trainer)
    with pytest.raises(Exception, match="max_steps"):
        compose_config(["trainer.max_steps=many"], output_dir=tmp_path)


def test_scheduler_is_a_partial_with_the_old_schedule(tmp_path: Path) -> None:
    cfg = compose_config(["model.scheduler.name=linear"], output_dir=tmp_path)
    assert cfg.model.scheduler._target_.endswith("schedules.warmup_schedule")
    module = hydra.utils.instantiate(cfg.model)
    assert isinstance(module.scheduler_factory, functools.partial)
    assert "scheduler" not in module.hparams  # a partial is not a plain value

    def lrs(make) -> list[float]:
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        sched = make(opt)
        out = []
        for _ in range(100):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        return out

    # tiny: warmup_ratio 0.05, min_lr_ratio 0.1; what configure_optimizers built before
    assert lrs(lambda o: module.scheduler_factory(o, total_steps=100)) == lrs(
        lambda o: build_scheduler(o, "linear", 5, 100, 0.1)
    )
    assert lrs(lambda o: warmup_schedule(o, 100, warmup_ratio=0.5, warmup_steps=2)) == lrs(
        lambda o: build_scheduler(o, "cosine", 2, 100, 0.0)
    )
    desc = module.optimizer_description()["scheduler"]
    assert desc["type"].endswith("warmup_schedule") and desc["params"]["name"] == "linear"


def test_hparams_search_optimises_the_validation_loss(tmp_path: Path) -> None:
    """Even a sweep point stopped by max_steps before its epoch's end returns ``val/loss``."""
    from xlam.train import train

    over = ["hparams_search=optuna_lr", "trainer.max_steps=2", "export.enabled=false"]
    cfg = compose_config([*over, "callbacks=none", "logger=none", *QUIET], tmp_path)
    assert cfg.optimized_metric == "val/loss"
    metrics, _ = train(cfg)
    assert metrics["val/loss"] > 0

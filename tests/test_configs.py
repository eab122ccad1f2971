"""Every option of every config group composes, and the cheap ones instantiate."""

from __future__ import annotations

from pathlib import Path

import hydra
import pytest
from lightning.pytorch import Callback
from lightning.pytorch.loggers import Logger
from omegaconf import OmegaConf

from xlam.models.components.schedules import param_groups
from xlam.utils.hydra import CONF_DIR, compose_config

GROUPS = sorted(p.name for p in CONF_DIR.iterdir() if p.is_dir() and p.name != "local")
# Presets of real model families need a local folder; any path composes.
NEEDS = {"model": ["model.path=/models/some-model"]}
# Groups of conf/eval.yaml (xlam-eval); the others are conf/train.yaml's.
EVAL_GROUPS = {"backend", "suite"}
# An endpoint has no default: any address composes.
NEEDS_OPTION = {("backend", "openai"): ["backend.base_url=http://127.0.0.1:1", "backend.model=m"]}


def _options() -> list[tuple[str, str]]:
    out = []
    for group in GROUPS:
        for f in sorted((CONF_DIR / group).rglob("*.yaml")):
            rel = f.relative_to(CONF_DIR / group).with_suffix("")
            if group != "hydra" and rel.parent != Path("."):
                out.append((f"{group}/{rel.parent}", rel.name))  # a nested group: model/optimizer
            else:
                out.append((group, str(rel)))
    return out


OPTIONS = _options()


def test_groups_present() -> None:
    for group in (
        "data",
        "model",
        "trainer",
        "callbacks",
        "logger",
        "paths",
        "hydra",
        "extras",
        "experiment",
        "hparams_search",
        "debug",
    ):
        assert group in GROUPS, group
    names = {o for g, o in OPTIONS if g == "trainer"}
    assert {
        "cpu",
        "gpu",
        "ddp",
        "deepspeed_zero2",
        "deepspeed_zero3",
        "deepspeed_zero3_offload",
    } <= names


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_compose_option(group: str, option: str, tmp_path: Path) -> None:
    if "/" in option and group == "hydra":
        override = [f"hydra/{option.split('/')[0]}={option.split('/', 1)[1]}"]
    elif group == "hydra":
        override = [f"hydra={option}"]
    else:
        override = [f"{group}={option}"]
    needs = [*NEEDS.get(group, []), *NEEDS_OPTION.get((group, option), [])]
    config_name = "eval" if group in EVAL_GROUPS else "train"
    cfg = compose_config([*override, *needs], output_dir=tmp_path, config_name=config_name)
    # Every value resolves (no dangling interpolation, no missing mandatory value).
    body = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    container = OmegaConf.to_container(body, resolve=True, throw_on_missing=True)
    assert container["paths"]["output_dir"] == str(tmp_path.resolve())
    if group in ("callbacks", "logger"):
        nodes = cfg.get(group) or {}
        assert nodes or option == "none", f"{group}={option} configures nothing"
        kind = Callback if group == "callbacks" else Logger
        for name, node in nodes.items():
            obj = hydra.utils.instantiate(node)
            if obj is None:  # a factory switched off by its config (callbacks.eval)
                assert node.get("enabled") is False, name
                continue
            assert isinstance(obj, kind), (name, type(obj))
            # Hydra owns the run directory: what a callback or logger writes goes below it.
            where = getattr(obj, "dirpath", None) or getattr(obj, "save_dir", None)
            if where is not None:
                assert Path(where).resolve().is_relative_to(tmp_path.resolve()), (name, where)
    if group == "model/optimizer":  # a partial the module calls with the parameter groups
        module = hydra.utils.instantiate(cfg.model)
        module.configure_model()
        groups = param_groups(
            module.model,
            0.0,
            named=getattr(
                hydra.utils.get_method(cfg.model.optimizer._target_), "named_params", False
            ),
        )
        assert hydra.utils.instantiate(cfg.model.optimizer)(groups).param_groups
    if group == "data":
        dm = hydra.utils.instantiate(cfg.data)
        # The datamodule reads every configured source as configured, from a file that exists.
        sources = container["data"]["sources"]
        assert {s.name: {k: getattr(s, k) for k in sources[s.name]} for s in dm.specs} == sources
        for spec in dm.specs:
            assert Path(spec.path).exists(), spec


def test_model_module_instantiates(tmp_path: Path) -> None:
    cfg = compose_config([], output_dir=tmp_path)
    module = hydra.utils.instantiate(cfg.model)
    module.configure_model()
    assert sum(p.numel() for p in module.model.parameters()) > 0
    # idempotent: a second call keeps the same model
    model = module.model
    module.configure_model()
    assert module.model is model


def test_typo_fails_at_compose(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="trainer"):
        compose_config(["trainer=does_not_exist"], output_dir=tmp_path)


@pytest.mark.parametrize("lora", [False, True])
def test_a_loaded_model_trains_in_train_mode(tiny_export: Path, tmp_path: Path, lora: bool) -> None:
    """from_pretrained gives eval mode and Lightning keeps modes: dropout would be off."""
    cfg = compose_config(
        [f"model.path={tiny_export}", f"model.lora.enabled={lora}"], output_dir=tmp_path
    )
    module = hydra.utils.instantiate(cfg.model)
    module.configure_model()
    assert all(m.training for m in module.model.modules())

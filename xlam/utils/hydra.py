"""Hydra/OmegaConf glue: resolvers, composing configs outside ``@hydra.main``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


def _asset(rel: str = "") -> str:
    from xlam import ASSETS_DIR

    return str(ASSETS_DIR / rel)


def _wandb_offline() -> bool:
    if os.environ.get("WANDB_MODE") in ("offline", "disabled"):
        return True
    if os.environ.get("WANDB_API_KEY"):
        return False
    netrc = Path.home() / ".netrc"
    return not (netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="ignore"))


def _stable_id(text: str) -> str:
    # The same run dir gives the same id, so a resumed run continues its wandb run.
    import hashlib

    return hashlib.sha1(str(text).encode()).hexdigest()[:16]


def register_resolvers() -> None:
    """Register ``${xlam_asset:rel}``, ``${xlam_wandb_offline:}`` and the typed schemas."""
    from xlam.data.mixture import register_configs

    resolvers = (
        ("xlam_asset", _asset),
        ("xlam_wandb_offline", _wandb_offline),
        ("xlam_stable_id", _stable_id),
    )
    for name, fn in resolvers:
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)
    # Typed schemas make a wrong type fail when the config is composed, not mid-run.
    register_configs()


def compose_config(
    overrides: list[str] | None = None,
    output_dir: str | Path | None = None,
    config_name: str = "train",
) -> DictConfig:
    """Compose the training config as the CLI would, for tests and notebooks.

    Args:
        overrides: CLI-style overrides, e.g. ``["trainer.max_steps=5", "debug=fdr"]``.
        output_dir: Run directory (defaults to a fresh folder under ``./logs``).
        config_name: Primary config in ``conf/``.

    Returns:
        The config, with HydraConfig set so ``${hydra:...}`` interpolations resolve.
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    register_resolvers()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=overrides or [], return_hydra_config=True)
    if output_dir is None:
        from xlam.utils.run_record import new_run_id

        output_dir = Path.cwd() / "logs" / "notebook" / new_run_id()
    output_dir = Path(output_dir).resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(output_dir)
        cfg.hydra.runtime.cwd = str(Path.cwd())
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    return cfg


def to_container(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config without the ``hydra`` node."""
    data = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(data, dict)
    data.pop("hydra", None)
    return data

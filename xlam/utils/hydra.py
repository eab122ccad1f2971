"""Hydra/OmegaConf glue: resolvers, composing configs outside ``@hydra.main``."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from omegaconf import DictConfig, OmegaConf, open_dict, read_write

T = TypeVar("T")


def _find_conf_dir() -> Path:
    """The configs: ``xlam/conf`` when installed, the repo's ``conf/`` in a checkout.

    In a checkout ``xlam/conf`` is a symlink to the top-level ``conf/`` (the source of
    truth), so resolving it makes an editable install read ``conf/`` itself; a wheel or
    sdist carries a real copy there. The top-level ``conf/`` is the fallback for a
    checkout made without symlinks.
    """
    package = Path(__file__).resolve().parents[1]
    for candidate in (package / "conf", package.parent / "conf"):
        if (candidate / "train.yaml").is_file():
            return candidate.resolve()
    # Neither exists: Hydra's "config directory not found" then names the packaged path.
    return package / "conf"


CONF_DIR = _find_conf_dir()


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


def register_resolvers(schemas: bool = True) -> None:
    """Register ``${xlam_asset:rel}``, ``${xlam_wandb_offline:}`` and the typed schemas.

    Args:
        schemas: Also the schemas (:func:`register_schemas`; the trainer's imports Lightning).
    """
    resolvers = (
        ("xlam_asset", _asset),
        ("xlam_wandb_offline", _wandb_offline),
        ("xlam_stable_id", _stable_id),
    )
    for name, fn in resolvers:
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)
    if schemas:
        register_schemas()


def register_schemas() -> None:
    """Store the typed schemas of the data, model and trainer groups in the ConfigStore.

    They make an unknown key or a wrong type fail when the config is composed, not mid-run.
    """
    from xlam.data.mixture import register_configs as register_data_schema
    from xlam.models.config import register_configs as register_model_schemas

    register_data_schema()
    register_model_schemas()


def _compose(overrides: list[str], config_name: str, tool: bool = False) -> DictConfig:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    register_resolvers(schemas=not tool)
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name=config_name, overrides=overrides, return_hydra_config=not tool)


def compose_tool_config(config_name: str, overrides: list[str] | None = None) -> DictConfig:
    """Compose a primary config of ``conf/`` for a command that owns no run dir.

    For ``xlam-data critique`` (``conf/critic.yaml``): Hydra's defaults lists and
    ``key=value`` overrides, without the ``hydra`` runtime node and without the training
    schemas (they would import Lightning into a data command).
    """
    return _compose(overrides or [], config_name, tool=True)


def _activate(
    cfg: DictConfig, output_dir: Path | None, num: int = 0, multirun: bool = False
) -> None:
    """Fill the runtime fields Hydra sets when it launches a job, and make ``cfg`` current."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    # set_config made the hydra node read-only: a second call (sweep points) unlocks it
    with read_write(cfg.hydra), open_dict(cfg):
        if output_dir is not None:
            output_dir.mkdir(parents=True, exist_ok=True)
            cfg.hydra.runtime.output_dir = str(output_dir)
        cfg.hydra.runtime.cwd = str(Path.cwd())
        cfg.hydra.job.num = num
        cfg.hydra.mode = RunMode.MULTIRUN if multirun else RunMode.RUN
    HydraConfig.instance().set_config(cfg)


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
    cfg = _compose(overrides or [], config_name)
    if output_dir is None:
        from xlam.utils.run_record import new_run_id

        output_dir = Path.cwd() / "logs" / "notebook" / new_run_id()
    _activate(cfg, Path(output_dir).resolve())
    return cfg


def sweep_points(overrides: list[str], config_name: str = "train") -> list[list[str]]:
    """The points of a ``-m`` sweep: one override list per run, in Hydra's launch order.

    Comma lists, ``range(...)`` and ``glob(...)`` over a config group expand as Hydra's basic
    sweeper expands them for ``xlam-train -m``: the cartesian product, first key outermost.

    Args:
        overrides: CLI-style overrides, e.g. ``["model.optimizer.lr=1e-3,3e-3", "debug=fdr"]``.
        config_name: Primary config in ``conf/`` (``glob`` lists the options of its groups).

    Raises:
        ValueError: An override that is not a discrete sweep (``interval(...)`` is for
            search sweepers such as Optuna, not for points run in this process).
    """
    import itertools

    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser

    register_resolvers()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        parser = OverridesParser.create(config_loader=GlobalHydra.instance().config_loader())
        parsed = parser.parse_overrides(overrides)
    choices: dict[str, list[str]] = {}
    for override in parsed:
        key = override.get_key_element()
        if not override.is_sweep_override():
            choices[key] = [override.input_line]
        elif override.is_discrete_sweep():
            choices[key] = [f"{key}={value}" for value in override.sweep_string_iterator()]
        else:
            raise ValueError(
                f"sweep override {override.input_line!r}: only comma lists, range() and glob() "
                "run as -m points; interval() needs a sweeper such as hparams_search=optuna_lr"
            )
    return [list(point) for point in itertools.product(*choices.values())]


_BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


@dataclass
class SweepRun(Generic[T]):
    """One point of a sweep: its overrides, its run directory and what the task returned."""

    overrides: list[str]
    output_dir: Path
    result: T


def run_sweep(
    overrides: list[str],
    task: Callable[[DictConfig], T],
    sweep_dir: str | Path | None = None,
    config_name: str = "train",
) -> list[SweepRun[T]]:
    """Run every point of a ``-m`` sweep in this process, as ``xlam-train -m`` would.

    Each point is composed like a Hydra multirun job (``hydra.mode=MULTIRUN``, its
    ``hydra.job.num``) and writes into ``<sweep_dir>/<hydra.sweep.subdir>``; points run one
    after the other, single-process, as the basic launcher runs them.

    Args:
        overrides: CLI-style overrides with sweeps, e.g. ``["model.optimizer.lr=1e-3,3e-3"]``.
        task: Called with each point's config, e.g. :func:`xlam.train.train`.
        sweep_dir: Folder of the points (default: the config's ``hydra.sweep.dir``,
            ``logs/<task_name>/multiruns/<time>``).
        config_name: Primary config in ``conf/``.

    Returns:
        One :class:`SweepRun` per point, in launch order.
    """
    runs: list[SweepRun[T]] = []
    for num, point in enumerate(sweep_points(overrides, config_name)):
        cfg = _compose(point, config_name)
        sweeper = cfg.hydra.sweeper
        if sweeper.get("_target_") != _BASIC_SWEEPER or sweeper.get("params"):
            raise ValueError(
                f"sweep {point}: run_sweep expands the -m overrides only; hydra.sweeper "
                f"{sweeper.get('_target_')} (e.g. hparams_search=...) runs with xlam-train -m"
            )
        _activate(cfg, None, num=num, multirun=True)
        if sweep_dir is None:
            # Resolved once, as Hydra does: every point shares the first point's ${now:...}.
            sweep_dir = cfg.hydra.sweep.dir
        output_dir = Path(sweep_dir).resolve() / str(cfg.hydra.sweep.subdir)
        _activate(cfg, output_dir, num=num, multirun=True)
        runs.append(SweepRun(point, output_dir, task(cfg)))
    return runs


def to_container(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config without the ``hydra`` node."""
    data = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(data, dict)
    data.pop("hydra", None)
    return data

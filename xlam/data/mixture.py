"""Mixture recipes: which sources, how much of each, and the plan of the run.

Two rules, one per mixture (ActionStudio semantics):

- ``epochs`` (default 1): source ``s`` delivers ``size_s × epochs_s`` samples, so its
  probability is ``size_s·epochs_s / Σ size·epochs``; ``size`` is counted when omitted.
- ``weight``: the run has ``num_samples`` samples (default: the sum of sizes) split by weight.

The typed schema (:class:`DataConfig`) checks a ``data:`` config with messages a user
understands; :func:`register_configs` puts it in Hydra's ConfigStore so that a config can
use it as a schema (``defaults: [/schema/data@_here_, _self_]``) and fail at compose time.

The embedded samples (``xlam/assets/data``) never train beside data of your own unless asked
(``keep_samples``): naming any other source makes the mixture yours (:func:`leave_out_samples`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from xlam import SAMPLE_DATA_DIR
from xlam.data.packing import PackingConfig
from xlam.data.scores import check_min_score

log = logging.getLogger(__name__)

OVERLONG = ("drop", "truncate", "error")


@dataclass
class SourceSpec:
    """One source of a mixture.

    Attributes:
        name: Source name (used in metrics and the run record).
        path: File or folder holding the records.
        format: Importer name (``unified`` for the unified JSONL format).
        size: Records to use (the first ``size``); counted from the data when ``None``.
        epochs: Passes over the source (fractions subsample without repeats).
        weight: Explicit mixing weight; excludes ``epochs``.
        streaming: Read the file sequentially while training instead of rendering it into
            the cache first (for data larger than memory or disk cache).
        shuffle_buffer: Records held by a streaming source's shuffle buffer.
        max_drop_fraction: Share of the source that may be lost (render errors, overlong
            samples dropped or truncated) before the run stops with an error naming the
            rules; ``None`` uses ``data.max_drop_fraction``. ``1.0`` accepts any loss, even
            a source left with no usable sample (it then leaves the mixture).
        min_score: Keep only trajectories the critic scored at least this (1..5,
            ``metadata.critic.score``, written by ``xlam-data critique``); the others are
            counted and logged, not lost (:func:`xlam.data.sources.filter_min_score`). A
            trajectory never judged (or whose judgement failed) is an error, not a drop.
    """

    name: str
    path: str
    format: str = "unified"
    size: int | None = None
    epochs: float | None = None
    weight: float | None = None
    streaming: bool = False
    shuffle_buffer: int = 10_000
    max_drop_fraction: float | None = None
    min_score: int | None = None

    def __post_init__(self) -> None:
        where = f"data.sources.{self.name}"
        if not self.path:
            raise ValueError(f"{where}.path is empty")
        if self.epochs is not None and self.weight is not None:
            raise ValueError(f"{where}: give either epochs or weight, not both")
        if self.epochs is not None and self.epochs < 0:
            raise ValueError(f"{where}.epochs must be >= 0, got {self.epochs}")
        if self.weight is not None and self.weight < 0:
            raise ValueError(f"{where}.weight must be >= 0, got {self.weight}")
        if self.size is not None and self.size < 0:
            raise ValueError(f"{where}.size must be >= 0, got {self.size}")
        if self.shuffle_buffer < 1:
            raise ValueError(f"{where}.shuffle_buffer must be >= 1, got {self.shuffle_buffer}")
        if self.max_drop_fraction is not None:
            check_fraction(f"{where}.max_drop_fraction", self.max_drop_fraction)
        if self.min_score is not None:
            check_min_score(f"{where}.min_score", self.min_score)

    @property
    def left_out(self) -> bool:
        """The config itself gives this source no samples (epochs, weight or size 0)."""
        return self.epochs == 0 or self.weight == 0 or self.size == 0


def check_fraction(where: str, value: float) -> None:
    """Raise unless ``0 <= value <= 1``."""
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{where} must be between 0 and 1, got {value}")


@dataclass
class RenderConfig:
    """Schema of ``data.render``: the fields of :class:`~xlam.data.render.RenderOptions`.

    Same names and defaults (a test keeps them in step); an unknown key fails at compose
    time, and ``RenderOptions`` checks the values when the datamodule is built.

    Attributes:
        mode: ``all_turns``, ``per_turn`` or ``auto``.
        tool_format: ``template``, ``system``, ``prompt`` or ``auto``.
        enable_thinking: Passed to templates that read it (Qwen3); ``None``: not passed.
        supervise_reasoning: Whether reasoning tokens are in the loss.
        arguments_as_string: Tool-call arguments as JSON strings; ``None``: probed.
        max_length: Truncate samples to this many tokens in the renderer.
        shared_history: Preference pairs: the history once, both sides branching off it.
        strict: Raise on the first trajectory the template cannot render.
    """

    mode: str = "auto"
    tool_format: str = "template"
    enable_thinking: bool | None = None
    supervise_reasoning: bool = True
    arguments_as_string: bool | None = None
    max_length: int | None = None
    shared_history: bool = False
    strict: bool = False


def _open_mapping() -> Any:
    # Hydra closes every mapping of the composed config, so `data.sources={mine: {...}}` and
    # `data.sources.mine.path=...` would be refused ("not in struct"); a flag set on the
    # schema's own node survives composition and keeps this one open.
    from omegaconf import OmegaConf

    return OmegaConf.create({}, flags={"struct": False})


@dataclass
class DataConfig:
    """Schema of the ``data`` group (arguments of ``TrajectoryDataModule``).

    Attributes:
        sources: ``{name: {path, format, ...}}``, checked into :class:`SourceSpec`. An open
            mapping in the Hydra schema: ``data.sources={mine: {path: ...}}`` and
            ``data.sources.mine.path=...`` add sources without a ``+``.
        keep_samples: Keep the embedded samples in a mixture that names sources of its
            own (by default they leave it; see :func:`leave_out_samples`).
        tokenizer_path: Tokenizer whose chat template renders the data.
        batch_size: Rows per micro-batch per rank (packed bins when packing is on).
        max_length: Longest sample in tokens (default: ``packing.seq_length`` or 1024).
        overlong: What happens to longer samples: ``drop``, ``truncate`` or ``error``.
        seed: Seed of the sampler, the packer and streaming shuffle buffers.
        num_samples: Total stream length for weight-based mixtures.
        val_size: Samples per (non-streaming) source held out for validation.
        render: Renderer options (:class:`RenderConfig`).
        num_workers: DataLoader workers.
        overfit_samples: Keep only the first N samples of each source (debugging).
        packing: Sequence packing settings.
        cache_dir: Folder of the rendered-sample cache; ``None`` renders in memory.
        num_proc: Processes rendering a source into the cache (``None``: by size).
        max_drop_fraction: Default of each source's ``max_drop_fraction``: the share of a
            source that may be lost before the run stops (see ``docs/data_pipeline.md``).
    """

    _target_: str = "xlam.data.datamodule.TrajectoryDataModule"
    sources: dict[str, Any] = field(default_factory=_open_mapping)
    keep_samples: bool = False
    tokenizer_path: str | None = "???"
    batch_size: int = 8
    max_length: int | None = None
    overlong: str = "drop"
    seed: int = 0
    num_samples: int | None = None
    val_size: int = 0
    render: RenderConfig = field(default_factory=RenderConfig)
    num_workers: int = 0
    overfit_samples: int | None = None
    packing: PackingConfig = field(default_factory=PackingConfig)
    cache_dir: str | None = None
    num_proc: int | None = None
    max_drop_fraction: float = 0.01

    def __post_init__(self) -> None:
        if not self.sources:
            raise ValueError("data.sources is empty: give at least one source")
        specs = sources_from_config(self.sources, self.keep_samples)
        self.sources = {s.name: s for s in specs}
        if self.batch_size < 1:
            raise ValueError(f"data.batch_size must be >= 1, got {self.batch_size}")
        if self.overlong not in OVERLONG:
            raise ValueError(f"data.overlong must be one of {OVERLONG}, got {self.overlong!r}")
        if self.max_length is not None and self.max_length < 1:
            raise ValueError(f"data.max_length must be >= 1, got {self.max_length}")
        check_fraction("data.max_drop_fraction", self.max_drop_fraction)
        pk = self.packing
        if (
            isinstance(pk, PackingConfig)
            and pk.enabled
            and self.max_length is not None
            and self.max_length > pk.seq_length
        ):
            raise ValueError(
                f"data.max_length={self.max_length} > data.packing.seq_length="
                f"{pk.seq_length}: a packed sample must fit one bin"
            )
        if self.num_workers < 0:
            raise ValueError(f"data.num_workers must be >= 0, got {self.num_workers}")
        specs = list(self.sources.values())
        uses_weight = [s.name for s in specs if s.weight is not None]
        if uses_weight and len(uses_weight) != len(specs):
            raise ValueError(
                f"data.sources {', '.join(uses_weight)} use weight and the others use epochs: "
                "one mixture follows one rule"
            )


def validate_data_config(cfg: Any) -> DataConfig:
    """Check a ``data`` config (mapping or DictConfig) against :class:`DataConfig`.

    Unknown keys, wrong types and cross-field mistakes raise with the offending key.

    Returns:
        The typed config.
    """
    from omegaconf import DictConfig, OmegaConf

    if isinstance(cfg, DictConfig):
        cfg = OmegaConf.to_container(cfg, resolve=True)
    merged = OmegaConf.merge(OmegaConf.structured(DataConfig), cfg)
    obj = OmegaConf.to_object(merged)
    assert isinstance(obj, DataConfig)
    return obj


def register_configs() -> None:
    """Store :class:`DataConfig` as ``schema/data`` in Hydra's ConfigStore (idempotent)."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(group="schema", name="data", node=DataConfig)


def is_embedded_sample(path: str | Path) -> bool:
    """Whether ``path`` is one of the sample files shipped in ``xlam/assets/data``."""
    try:
        return Path(path).resolve().is_relative_to(SAMPLE_DATA_DIR.resolve())
    except (OSError, ValueError):
        return False


def leave_out_samples(specs: list[SourceSpec], keep_samples: bool = False) -> list[SourceSpec]:
    """The mixture to train: without the embedded samples once a source of your own is named.

    The default config trains the samples; ``data.sources.mine.path=...`` (or a whole
    ``data.sources={...}``) merges into that mixture, and a run that names its own data must
    not quietly train on the tiny samples too. ``keep_samples`` keeps them.
    """
    own = [s for s in specs if not is_embedded_sample(s.path)]
    if keep_samples or not own or len(own) == len(specs):
        return specs
    left = [s.name for s in specs if is_embedded_sample(s.path)]
    log.info(
        "data.sources: training %s; the embedded samples %s are left out "
        "(data.keep_samples=true keeps them)",
        ", ".join(s.name for s in own),
        ", ".join(left),
    )
    return own


def sources_from_config(cfg: Mapping[str, Any], keep_samples: bool = False) -> list[SourceSpec]:
    """Build source specs from a ``{name: {path, format, ...}}`` mapping.

    Values are converted to the fields' types (``epochs: "0.5"`` from the command line). The
    embedded samples leave a mixture that names sources of its own unless ``keep_samples``
    (:func:`leave_out_samples`).

    Raises:
        ValueError: On an unknown key (naming it and the known ones) or a wrong type.
    """
    from omegaconf import OmegaConf

    known = {f.name for f in fields(SourceSpec)} - {"name"}
    specs = []
    for name, spec in cfg.items():
        if spec is None:
            continue
        if isinstance(spec, SourceSpec):  # already checked
            specs.append(spec)
            continue
        if not isinstance(spec, Mapping):
            raise ValueError(f"data.sources.{name} must be a mapping (path, format, ...)")
        spec = dict(spec)
        unknown = set(spec) - known
        if unknown:
            raise ValueError(
                f"data.sources.{name}: unknown key(s) {', '.join(sorted(unknown))} "
                f"(known: {', '.join(sorted(known))})"
            )
        try:
            typed = OmegaConf.merge(OmegaConf.structured(SourceSpec), {**spec, "name": name})
        except Exception as e:  # OmegaConf names the key and the type it wanted
            raise ValueError(f"data.sources.{name}: {e}") from None
        specs.append(OmegaConf.to_object(typed))
    return leave_out_samples(specs, keep_samples)


def plan_mixture(
    specs: list[SourceSpec], sizes: Mapping[str, int], num_samples: int | None = None
) -> dict[str, int]:
    """Number of samples each source delivers over the run.

    With ``epochs`` source ``s`` gives ``round(size_s × epochs_s)`` samples; with
    ``num_samples`` these are rescaled to that total (largest remainder, so the total is
    exact). With ``weight`` the run has ``num_samples`` samples (default: the sum of sizes)
    split by weight.

    Raises:
        ValueError: When sources mix ``epochs`` and ``weight``, or weights sum to zero.
    """
    by_weight = [s for s in specs if s.weight is not None]
    if by_weight and len(by_weight) != len(specs):
        names = ", ".join(s.name for s in by_weight)
        raise ValueError(f"sources {names} use weight; the others use epochs: pick one rule")
    if by_weight:
        total = num_samples if num_samples is not None else sum(sizes[s.name] for s in specs)
        wsum = sum(s.weight or 0.0 for s in specs)
        if wsum <= 0:
            raise ValueError("mixture weights sum to zero")
        return _largest_remainder({s.name: total * (s.weight or 0.0) / wsum for s in specs}, total)
    plan = {s.name: sizes[s.name] * (1.0 if s.epochs is None else s.epochs) for s in specs}
    if num_samples is not None:
        raw = sum(plan.values())
        if raw <= 0:
            raise ValueError("every source plans 0 samples: nothing to rescale")
        return _largest_remainder({k: num_samples * v / raw for k, v in plan.items()}, num_samples)
    return {k: math.floor(v + 0.5) for k, v in plan.items()}


def probabilities(plan: Mapping[str, int]) -> dict[str, float]:
    """Share of each source in the stream."""
    total = sum(plan.values())
    return {k: (v / total if total else 0.0) for k, v in plan.items()}


def _largest_remainder(shares: dict[str, float], total: int) -> dict[str, int]:
    floors = {k: math.floor(v) for k, v in shares.items()}
    left = total - sum(floors.values())
    for k in sorted(shares, key=lambda k: floors[k] - shares[k])[:left]:
        floors[k] += 1
    return floors


def planned_steps(
    total_units: int, batch_size: int, world_size: int = 1, accumulate: int = 1
) -> int:
    """Optimizer steps that consume the planned stream once.

    Args:
        total_units: Rows in the run: samples, or bins when packing.
        batch_size: Rows per micro-batch per rank.
        world_size: Data-parallel ranks.
        accumulate: Micro-batches per optimizer step.
    """
    per_step = batch_size * world_size * accumulate
    return max(1, total_units // per_step)


__all__ = [
    "OVERLONG",
    "DataConfig",
    "RenderConfig",
    "SourceSpec",
    "is_embedded_sample",
    "leave_out_samples",
    "plan_mixture",
    "planned_steps",
    "probabilities",
    "register_configs",
    "sources_from_config",
    "validate_data_config",
]

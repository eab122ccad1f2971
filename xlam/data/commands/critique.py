"""``xlam-data critique IN --out OUT [--model M] [--base-url URL | --backend hf] ...``.

An LLM judge scores each trajectory 1-5 with reasons (``conf/critic.yaml``: the judge
settings and the rubric; flags and ``--set KEY=VALUE`` override them). OUT holds every
trajectory of IN, in order, with ``metadata.critic``; judgements are cached in
``OUT.cache.jsonl`` as they arrive, so a re-run (after a kill, or on the same data) asks
only what is not judged yet. Counts go to ``OUT.report.json`` and the terminal.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from xlam.data.commands.convert import beside, check_paths
from xlam.data.commands.errors import UserError

# flag -> config key
_FLAGS = {
    "base_url": "judge.base_url",
    "model": "judge.model",
    "api_key_env": "judge.api_key_env",
    "concurrency": "judge.concurrency",
    "retries": "judge.retries",
    "backoff": "judge.backoff",
    "timeout": "judge.timeout",
    "max_reasks": "max_reasks",
    "prompt": "prompt_file",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", type=Path, help="unified trajectories (JSONL)")
    parser.add_argument("--out", type=Path, required=True, help="JSONL with metadata.critic")
    parser.add_argument(
        "--backend", choices=("openai", "hf"), default=None, help="the judge (default: openai)"
    )
    parser.add_argument("--base-url", default=None, help="OpenAI-compatible endpoint (openai)")
    parser.add_argument(
        "--model", default=None, help="served model name (openai) or model folder (hf)"
    )
    parser.add_argument(
        "--api-key-env",
        default=None,
        help="environment variable holding the API key (default OPENAI_API_KEY)",
    )
    parser.add_argument("--prompt", type=Path, default=None, help="rubric file with {trajectory}")
    parser.add_argument("--concurrency", type=int, default=None, help="requests in flight")
    parser.add_argument("--retries", type=int, default=None, help="retries per request")
    parser.add_argument("--backoff", type=float, default=None, help="first retry delay (s)")
    parser.add_argument("--timeout", type=float, default=None, help="seconds per request")
    parser.add_argument("--max-reasks", type=int, default=None, help="re-asks of a bad answer")
    parser.add_argument(
        "--cache", type=Path, default=None, help="judgement cache (default OUT.cache.jsonl)"
    )
    parser.add_argument(
        "--report", type=Path, default=None, help="counts as JSON (default OUT.report.json)"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any key of conf/critic.yaml (repeatable), e.g. judge.temperature=0.2",
    )


def overrides(args: argparse.Namespace) -> list[str]:
    """The Hydra overrides the flags stand for, then ``--set``'s (which win)."""
    out = [f"backend@judge={args.backend}"] if args.backend else []
    for flag, key in _FLAGS.items():
        value = getattr(args, flag)
        if value is not None:
            # Quoted: a URL or path holds characters Hydra's override grammar would read.
            text = str(value).replace("'", "\\'")
            out.append(f"{key}='{text}'" if isinstance(value, str | Path) else f"{key}={value}")
    return [*out, *args.overrides]


def load_config(args: argparse.Namespace) -> Any:
    """``conf/critic.yaml`` with the flags and ``--set`` applied."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from xlam.utils.hydra import compose_tool_config

    try:
        return compose_tool_config("critic", overrides(args))
    except (HydraException, OmegaConfBaseException) as e:
        raise UserError(f"config: {e}") from None


def by_source(
    title: str,
    columns: Sequence[str],
    summary: dict[str, Any],
    cells: Callable[[dict[str, Any]], list[str]],
) -> Any:
    """A rich table: one row per source of ``summary["sources"]``, then the total row."""
    from rich.table import Table

    table = Table(title=title)
    table.add_column("source")
    for col in columns:
        table.add_column(col, justify="right")
    rows = [*summary["sources"].items(), ("total", summary)]
    for i, (name, counts) in enumerate(rows):
        table.add_row(name, *cells(counts), end_section=i == len(rows) - 2)
    return table


def run(args: argparse.Namespace) -> int:
    from hydra.errors import HydraException
    from rich.console import Console

    from xlam.critic.run import run_critique
    from xlam.data.formats.io import progress
    from xlam.data.schema import SchemaError
    from xlam.data.scores import STATUSES
    from xlam.eval.backends.openai import BackendUnavailable

    if not args.input.is_file():
        raise UserError(f"{args.input}: no such file")
    cache = args.cache or beside(args.out, "cache.jsonl")
    report = args.report or beside(args.out, "report.json")
    check_paths([args.input], [args.out, cache, report])
    cfg = load_config(args)
    try:
        with progress(f"critique {args.input.name}") as update:
            summary = run_critique(args.input, args.out, cfg, cache, report, update)
    except BackendUnavailable as e:
        raise UserError(
            f"{e}\nThe judgements made so far are in {cache}: the same command continues."
        ) from None
    except (SchemaError, ValueError, OSError, HydraException) as e:
        raise UserError(str(e)) from None

    def cells(s: dict[str, Any]) -> list[str]:
        mean = "-" if s["mean_score"] is None else f"{s['mean_score']:.2f}"
        return [*(f"{s[c]:,}" for c in ("read", *STATUSES, "cached")), mean]

    title = f"critique: {args.input} ({summary['judge']['name']})"
    console = Console()
    console.print(by_source(title, ("read", *STATUSES, "cached", "mean score"), summary, cells))
    console.print(
        f"{summary['requests']:,} judge requests in {summary['seconds']:.1f} s -> {args.out}; "
        f"report {report}; cache {cache}"
    )
    return 0

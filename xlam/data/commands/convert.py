"""``xlam-data convert --format FMT IN OUT [--rejects FILE]``: native dataset -> unified JSONL.

Every input record ends in OUT or in the rejects file (rule, message, origin and the
original record); the counts are printed at the end.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from xlam.data.commands.errors import UserError
from xlam.data.formats import FORMATS, InputError, convert_file
from xlam.data.formats.io import progress


def beside(out: str | Path, suffix: str) -> Path:
    """A file next to an output: ``data/out.jsonl``, ``report.json`` -> ``data/out.report.json``."""
    out = Path(out)
    return out.with_name(f"{out.name.removesuffix('.jsonl')}.{suffix}")


def default_rejects(out: str | Path) -> Path:
    """``data/out.jsonl`` -> ``data/out.rejects.jsonl``."""
    return beside(out, "rejects.jsonl")


def check_paths(inputs: list[Path], outputs: list[Path]) -> None:
    """Refuse to write over an input (it would be truncated before being read)."""
    resolved = [p.resolve() for p in inputs]
    seen: set[Path] = set()
    for out in outputs:
        r = out.resolve()
        if r in resolved:
            raise UserError(f"output {out} is also an input")
        if r in seen:
            raise UserError(f"{out} is given for two outputs")
        if out.is_dir():
            raise UserError(f"output {out} is a directory")
        seen.add(r)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    formats = "; ".join(f"{name}: {f.description}" for name, f in FORMATS.items())
    parser.add_argument(
        "--format", "-f", required=True, choices=sorted(FORMATS), help=f"input format ({formats})"
    )
    parser.add_argument("input", type=Path, help="JSONL, JSON array, Parquet or datasets folder")
    parser.add_argument("output", type=Path, help="unified JSONL to write")
    parser.add_argument(
        "--rejects", type=Path, default=None, help="rejects JSONL (default: OUTPUT.rejects.jsonl)"
    )
    parser.add_argument(
        "--source", default=None, help="dataset name stored in each trajectory (default: FORMAT)"
    )
    parser.add_argument(
        "--verify",
        action="store_true",
        help="also apply the verify rules in the same pass: OUTPUT gets only good trajectories",
    )


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    rejects = args.rejects or default_rejects(args.output)
    if not args.input.exists():
        raise UserError(f"{args.input}: no such file or directory")
    check_paths([args.input], [args.output, rejects])
    console = Console()
    try:
        with progress(f"convert {args.input.name}") as update:
            if args.verify:
                from xlam.data.verify import verify_file

                checked = verify_file(
                    args.input,
                    args.output,
                    rejects,
                    on_progress=update,
                    fmt=args.format,
                    source=args.source,
                )
                console.print(checked.table())
                console.print(
                    f"good {checked.good:,} -> {args.output}   "
                    f"rejected {checked.rejected:,} -> {rejects}"
                )
                return 0
            report = convert_file(
                args.input, args.format, args.output, rejects, args.source, on_progress=update
            )
    except (InputError, OSError) as e:  # unreadable input, unwritable output, disk full
        raise UserError(str(e)) from None
    console.print(
        f"read {report.read:,}  converted {report.converted:,}  rejected {report.rejected:,}"
        f"  -> {args.output}" + (f", rejects -> {rejects}" if report.rejected else "")
    )
    for rule, n in report.rules.most_common():
        console.print(f"  {rule}: {n:,}")
    return 0

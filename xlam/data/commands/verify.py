"""``xlam-data verify IN --out GOOD [--rejects BAD] [--strict] [--summary JSON] ...``.

Checks every trajectory of a unified file against the rules of :mod:`xlam.data.verify`,
writes the good ones and the rejects, prints a per source x rule table. ``--strict`` makes
any rejection exit with code 1 (for CI gates).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from xlam.data.commands.convert import check_paths, default_rejects
from xlam.data.commands.errors import UserError
from xlam.data.formats import InputError
from xlam.data.formats.io import progress


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", type=Path, help="unified trajectories (JSONL, JSON, Parquet...)")
    parser.add_argument("--out", type=Path, required=True, help="JSONL of good trajectories")
    parser.add_argument(
        "--rejects", type=Path, default=None, help="rejects JSONL (default: OUT.rejects.jsonl)"
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 if anything is rejected")
    parser.add_argument(
        "--max-chars",
        type=int,
        default=200_000,
        help="reject trajectories whose JSON is longer (default 200000; 0: no limit)",
    )
    parser.add_argument("--tokenizer", type=Path, default=None, help="HF tokenizer folder")
    parser.add_argument(
        "--max-tokens", type=int, default=None, help="token limit (needs --tokenizer)"
    )
    parser.add_argument("--summary", type=Path, default=None, help="write the counts as JSON here")


def load_tokenizer(path: Path) -> Any:
    """A Hugging Face tokenizer from a local folder, or a :class:`UserError`."""
    if not path.is_dir():
        raise UserError(f"--tokenizer {path}: not a directory")
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(path), trust_remote_code=False)
    except Exception as e:
        raise UserError(f"--tokenizer {path}: cannot load a tokenizer: {e}") from None


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from xlam.data.verify import Verifier, verify_file

    if (args.max_tokens is None) != (args.tokenizer is None):
        raise UserError("--tokenizer and --max-tokens go together")
    if args.max_tokens is not None and args.max_tokens <= 0:
        raise UserError("--max-tokens must be positive")
    if args.max_chars < 0:
        raise UserError("--max-chars must be >= 0")
    if not args.input.exists():
        raise UserError(f"{args.input}: no such file or directory")
    rejects = args.rejects or default_rejects(args.out)
    outputs = [args.out, rejects] + ([args.summary] if args.summary else [])
    check_paths([args.input], outputs)
    tokenizer = load_tokenizer(args.tokenizer) if args.tokenizer else None
    verifier = Verifier(
        max_chars=args.max_chars or None, tokenizer=tokenizer, max_tokens=args.max_tokens
    )
    try:
        with progress(f"verify {args.input.name}") as update:
            report = verify_file(args.input, args.out, rejects, verifier, on_progress=update)
    except (InputError, OSError) as e:  # unreadable input, unwritable output, disk full
        raise UserError(str(e)) from None
    console = Console()
    console.print(report.table())
    console.print(f"good {report.good:,} -> {args.out}   rejected {report.rejected:,} -> {rejects}")
    if args.summary:
        summary = {
            "input": str(args.input),
            "good_file": str(args.out),
            "rejects_file": str(rejects),
            **report.to_dict(),
        }
        args.summary.parent.mkdir(parents=True, exist_ok=True)
        args.summary.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return 1 if args.strict and report.rejected else 0

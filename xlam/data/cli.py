"""``xlam-data``: the data command line (convert, verify, stats, inspect, critique, ...).

Each subcommand lives in ``xlam.data.commands.<name>`` and exposes
``add_arguments(parser)`` and ``run(args) -> int``. User mistakes (a missing file, a
malformed record) end with a one-line error and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from xlam.data.commands.errors import UserError

# name -> (module, one-line help). Modules are imported lazily so `--help` stays fast.
COMMANDS: dict[str, tuple[str, str]] = {}


def register(name: str, module: str, help: str) -> None:
    COMMANDS[name] = (module, help)


register("convert", "xlam.data.commands.convert", "convert a native dataset to unified JSONL")
register("verify", "xlam.data.commands.verify", "rule-check trajectories; write good and rejects")
register("stats", "xlam.data.commands.stats", "counts, lengths and histograms of a dataset")
register("inspect", "xlam.data.commands.inspect", "show rendered samples with supervised spans")
register("synth", "xlam.data.commands.synth", "generate verified synthetic tool-use data")
register("critique", "xlam.data.commands.critique", "score trajectories 1-5 with an LLM judge")
register("filter", "xlam.data.commands.filter", "keep trajectories whose critic score is >= K")
register(
    "pairs", "xlam.data.commands.pairs", "preference pairs: convert, from-synth, from-eval, verify"
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xlam-data", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (module, help) in COMMANDS.items():
        p = sub.add_parser(name, help=help, description=help)
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name != module:
                raise
            continue
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not hasattr(args, "_run"):
        print(f"xlam-data: command {args.command!r} is not available", file=sys.stderr)
        return 2
    try:
        return int(args._run(args) or 0)
    except (UserError, FileNotFoundError, IsADirectoryError) as e:
        print(f"xlam-data {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

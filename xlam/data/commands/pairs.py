"""``xlam-data pairs {convert,from-synth,from-eval,verify}``: turn-level preference pairs.

- ``convert --format FMT IN OUT [--rejects FILE] [--source NAME]``: native pairs (TRL/HF
  ``conversational``, or ``unified`` pairs) -> unified pair JSONL; every record ends in OUT or
  in the rejects file, like ``xlam-data convert``.
- ``from-synth IN --out OUT --seed S [--perturbations ...] [--per-turn N] [--report JSON]``:
  pairs from ``xlam-data synth`` output, each rejected call proven wrong by replay.
- ``from-eval RUN_DIR --out OUT [--data FILE ...] [--report JSON]``: the model's wrong
  next actions of an ``xlam-eval`` run against the gold ones.
- ``verify IN --out GOOD [--rejects BAD]``: pair rules, the verify rules on history +
  chosen, structural rules on history + rejected.

See ``docs/trajectory_format.md`` ("Preference pairs").
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from xlam.data.commands.convert import check_paths, default_rejects
from xlam.data.commands.errors import UserError

# Rules of ``xlam-data verify`` that a rejected message must still keep: a wrong call is
# the point of a rejected side, a malformed message is not.
REJECTED_RULES = frozenset({"call_id", "empty_assistant", "invalid_unicode"})
_SHOWN = 5


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from xlam.data.formats.pairs import PAIR_FORMATS
    from xlam.synth.pairs import PERTURBATIONS

    sub = parser.add_subparsers(dest="pairs_command", required=True)
    p = sub.add_parser("convert", help="native preference pairs -> unified pair JSONL")
    formats = "; ".join(f"{n}: {f.description}" for n, f in PAIR_FORMATS.items())
    p.add_argument("--format", "-f", required=True, choices=sorted(PAIR_FORMATS), help=formats)
    p.add_argument("input", type=Path, help="JSONL, JSON array, Parquet or datasets folder")
    p.add_argument("output", type=Path, help="unified pair JSONL to write")
    p.add_argument("--rejects", type=Path, default=None, help="default: OUTPUT.rejects.jsonl")
    p.add_argument("--source", default=None, help="dataset name stored in each pair")
    p.set_defaults(_pairs=run_convert)

    p = sub.add_parser("from-synth", help="pairs from verified synthetic trajectories")
    p.add_argument("input", type=Path, help="xlam-data synth output (train.jsonl, test.jsonl)")
    p.add_argument("--out", type=Path, required=True, help="pair JSONL to write")
    p.add_argument("--seed", type=int, required=True, help="same input and seed, same bytes")
    p.add_argument(
        "--perturbations",
        nargs="+",
        choices=PERTURBATIONS,
        default=list(PERTURBATIONS),
        help="kinds of rejected call to try (default: all)",
    )
    p.add_argument("--per-turn", type=int, default=1, help="pairs per call turn at most")
    p.add_argument("--report", type=Path, default=None, help="write the counts as JSON here")
    p.set_defaults(_pairs=run_from_synth)

    p = sub.add_parser("from-eval", help="pairs from an eval run's wrong next actions")
    p.add_argument("run_dir", type=Path, help="xlam-eval run dir (items.jsonl)")
    p.add_argument("--out", type=Path, required=True, help="pair JSONL to write")
    p.add_argument(
        "--data", type=Path, nargs="+", default=None, help="the eval's data (default: its path)"
    )
    p.add_argument("--report", type=Path, default=None, help="write the counts as JSON here")
    p.set_defaults(_pairs=run_from_eval)

    p = sub.add_parser("verify", help="rule-check pairs; write good and rejects")
    p.add_argument("input", type=Path, help="unified pair JSONL")
    p.add_argument("--out", type=Path, required=True, help="JSONL of good pairs")
    p.add_argument("--rejects", type=Path, default=None, help="default: OUT.rejects.jsonl")
    p.set_defaults(_pairs=run_verify)


def run(args: argparse.Namespace) -> int:
    return int(args._pairs(args))


def _need(path: Path) -> None:
    if not path.exists():
        raise UserError(f"{path}: no such file or directory")


def _write_report(path: Path | None, report: dict[str, Any]) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


def _show_rejects(rejects: Path, n: int) -> None:
    """The first rejects as ``file:line: rule: message``."""
    with rejects.open(encoding="utf-8") as f:
        for line, _ in zip(f, range(min(n, _SHOWN)), strict=False):
            r = json.loads(line)
            o = r["origin"]
            print(f"  {o.get('file')}:{o.get('line', o.get('index'))}: {r['rule']}: {r['message']}")


def run_convert(args: argparse.Namespace) -> int:
    from xlam.data.formats import InputError, convert_file
    from xlam.data.formats.pairs import PAIR_FORMATS

    _need(args.input)
    rejects = args.rejects or default_rejects(args.output)
    check_paths([args.input], [args.output, rejects])
    try:
        report = convert_file(
            args.input,
            PAIR_FORMATS[args.format].convert,
            args.output,
            rejects,
            args.source or args.format,
        )
    except (InputError, OSError) as e:
        raise UserError(str(e)) from None
    print(
        f"read {report.read}  converted {report.converted}  rejected {report.rejected}"
        f"  -> {args.output}" + (f", rejects -> {rejects}" if report.rejected else "")
    )
    for rule, n in report.rules.most_common():
        print(f"  {rule}: {n}")
    _show_rejects(rejects, report.rejected)
    return 0


def _read_json_lines(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as e:
                    raise UserError(f"{path}:{lineno}: invalid JSON: {e}") from None


def run_from_synth(args: argparse.Namespace) -> int:
    from xlam.data.preference import write_pairs
    from xlam.synth.generate import load_domains
    from xlam.synth.pairs import SynthPairReport, synth_pairs

    _need(args.input)
    check_paths([args.input], [args.out, *([args.report] if args.report else [])])
    if args.per_turn < 1:
        raise UserError(f"--per-turn must be >= 1, got {args.per_turn}")
    load_domains()
    report = SynthPairReport()
    kinds = tuple(dict.fromkeys(args.perturbations))
    pairs = synth_pairs(_read_json_lines(args.input), args.seed, kinds, args.per_turn, report)
    n = write_pairs(pairs, args.out)
    print(
        f"read {report.trajectories} trajectories ({report.failed_checks} fail a check), "
        f"{report.call_turns} call turns -> {n} pairs -> {args.out}"
    )
    for kind, row in report.by_kind.items():
        print(
            f"  {kind:17s} made {row['made']:6d}  unproven (discarded) {row['unproven']:5d}"
            f"  no candidate {row['no_candidate']:5d}"
        )
    _write_report(args.report, {"seed": args.seed, **report.to_dict()})
    return 0


def run_from_eval(args: argparse.Namespace) -> int:
    from xlam.data.preference import write_pairs
    from xlam.data.schema import SchemaError
    from xlam.eval.pairs import EvalPairReport, eval_data, eval_pairs, load_data

    _need(args.run_dir)
    report = EvalPairReport()
    try:  # the data first: a run that cannot be paired leaves no empty output behind
        data = load_data(args.data) if args.data else eval_data(args.run_dir)
        n = write_pairs(eval_pairs(args.run_dir, data, report), args.out)
    except SchemaError as e:
        raise UserError(str(e)) from None
    unmapped = sum(report.unmapped.values())
    print(
        f"items {report.items}: valid {report.valid}, pairs {n}, unmapped {unmapped} -> {args.out}"
    )
    for reason, count in sorted(report.unmapped.items()):
        print(f"  {reason}: {count} (e.g. {', '.join(report.examples[reason][:3])})")
    _write_report(args.report, report.to_dict())
    return 0


def check_pair(pair: Any, verifier: Any) -> list[Any]:
    """The verify rules a pair breaks: all of them on history + chosen, the structural ones
    (:data:`REJECTED_RULES`) on history + rejected; a repeated id once."""
    chosen = verifier.check(pair.completed("chosen"))
    rejected = [v for v in verifier.check(pair.completed("rejected")) if v.rule in REJECTED_RULES]
    return chosen + rejected


def _record(line: str) -> Any:
    """A rejected line as its JSON value, or its text when it is not JSON."""
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        return line.rstrip("\n")


def run_verify(args: argparse.Namespace) -> int:
    from xlam.data.formats.io import JsonlWriter
    from xlam.data.preference import PreferencePair
    from xlam.data.schema import SchemaError
    from xlam.data.verify import Verifier, Violation

    _need(args.input)
    rejects = args.rejects or default_rejects(args.out)
    check_paths([args.input], [args.out, rejects])
    verifier = Verifier(check_ids=False)
    seen: set[tuple[str, str]] = set()
    rules: Counter[str] = Counter()
    read = 0
    with (
        JsonlWriter(args.out) as good,
        JsonlWriter(rejects) as bad,
        args.input.open(encoding="utf-8") as f,
    ):
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            read += 1
            origin = {"file": str(args.input), "line": lineno}
            try:
                pair = PreferencePair.from_json(line)
            except SchemaError as e:
                problems = [Violation("schema", str(e))]
            else:
                problems = check_pair(pair, verifier)
                key = (pair.source, pair.id)
                if key in seen:
                    problems.append(Violation("duplicate_id", f"id {pair.id!r} seen before"))
                seen.add(key)
            if problems:
                rules.update({p.rule for p in problems})
                bad.write(
                    {
                        "rule": problems[0].rule,
                        "message": problems[0].message,
                        "violations": [p.to_dict() for p in problems],
                        "origin": origin,
                        "record": _record(line),
                    }
                )
            else:
                good.write(pair.to_dict())
    print(f"read {read}  good {good.count} -> {args.out}  rejected {bad.count} -> {rejects}")
    for rule, n in rules.most_common():
        print(f"  {rule}: {n}")
    _show_rejects(rejects, bad.count)
    return 0

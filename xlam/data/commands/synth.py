"""``xlam-data synth --n N --seed S --out DIR [--test-n M]``: verified synthetic trajectories.

Generates ``N`` train and ``M`` test trajectories (:func:`xlam.synth.generate.generate`),
runs APIGen's three checks on each (:func:`xlam.synth.checks.check_all`) and writes, in
``DIR``: ``train.jsonl`` and ``test.jsonl`` (the trajectories that pass all three),
``rejects.jsonl`` (the others, with their split, stage, problems and record) and
``report.json`` (counts: generated, passed, rejected per stage, per split, kind and domain,
and per rule; ``generated == passed + rejected`` everywhere). The same arguments write the
same bytes.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from xlam.data.commands.errors import UserError

_FILES = ("train.jsonl", "test.jsonl", "rejects.jsonl", "report.json")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n", type=int, required=True, help="train trajectories to generate")
    parser.add_argument("--seed", type=int, required=True, help="the seed (same seed, same bytes)")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument(
        "--test-n", type=int, default=None, help="test trajectories (default: N // 5)"
    )


def _line(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False) + "\n"


def _count(table: dict[str, dict[str, Any]], key: str, stage: str | None) -> None:
    from xlam.synth.checks import STAGES

    row = table.setdefault(key, {"generated": 0, "passed": 0, "rejected": dict.fromkeys(STAGES, 0)})
    row["generated"] += 1
    if stage is None:
        row["passed"] += 1
    else:
        row["rejected"][stage] += 1


def synthesize(n: int, seed: int, out: Path, test_n: int | None = None) -> dict[str, Any]:
    """Generate, check and write (see the module docstring); returns the report.

    Raises:
        UserError: ``n`` or ``test_n`` below 0, or ``out`` is a file.
    """
    from xlam.data.verify import Verifier
    from xlam.synth.checks import STAGES, CheckReport
    from xlam.synth.generate import generate

    test_n = n // 5 if test_n is None else test_n
    if n < 0 or test_n < 0:
        raise UserError(f"--n and --test-n must be >= 0, got {n} and {test_n}")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    verifier = Verifier()  # one for both splits: a repeated id is rejected (duplicate_id)
    checks = CheckReport()
    by: dict[str, dict[str, dict[str, Any]]] = {"split": {}, "kind": {}, "domain": {}}
    with (out / "rejects.jsonl").open("w", encoding="utf-8") as rejects:
        for split, count in (("train", n), ("test", test_n)):
            with (out / f"{split}.jsonl").open("w", encoding="utf-8") as good:
                for traj in generate(count, seed, split):
                    stage, problems = checks.check(traj, verifier)
                    meta = traj["metadata"]["synth"]
                    for key, value in (
                        ("split", split),
                        ("kind", meta["kind"]),
                        ("domain", meta["domain"]),
                    ):
                        _count(by[key], value, stage)
                    if stage is None:
                        good.write(_line(traj))
                    else:
                        reject = {
                            "id": traj["unique_trajectory_id"],
                            "split": split,
                            "stage": stage,
                            "problems": [p.to_dict() for p in problems],
                            "record": traj,
                        }
                        rejects.write(_line(reject))
    summary = checks.to_dict()
    report = {
        "seed": seed,
        "n": {"train": n, "test": test_n},
        "generated": summary["checked"],
        "passed": summary["passed"],
        "rejected": {"total": summary["rejected"], **summary["failed"]},
        "by_split": dict(sorted(by["split"].items())),
        "by_kind": dict(sorted(by["kind"].items())),
        "by_domain": dict(sorted(by["domain"].items())),
        "rules": summary["rules"],
        "examples": summary["examples"],
    }
    assert report["generated"] == report["passed"] + sum(report["rejected"][s] for s in STAGES)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


def run(args: argparse.Namespace) -> int:
    report = synthesize(args.n, args.seed, args.out, args.test_n)
    rej = report["rejected"]
    print(
        f"synth seed {report['seed']}: generated {report['generated']}, passed "
        f"{report['passed']}, rejected {rej['total']} (format {rej['format']}, execution "
        f"{rej['execution']}, semantic {rej['semantic']})"
    )
    for split, row in report["by_split"].items():
        print(f"  {split}: {row['passed']} -> {args.out / (split + '.jsonl')}")
    for kind, row in report["by_kind"].items():
        print(f"  {kind:16s} {row['passed']:6d} / {row['generated']}")
    if rej["total"]:
        print(f"  rejects -> {args.out / 'rejects.jsonl'}")
    print(f"  report -> {args.out / 'report.json'}")
    return 0

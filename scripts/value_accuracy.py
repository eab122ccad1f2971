"""Teacher-forced accuracy of a trained model on the argument values it should copy.

Renders unified trajectories with the model's tokenizer, runs each through the model once
(teacher forcing) and counts how often the most likely next token is the supervised one, in
three classes of supervised tokens:

* ``first``: the first token of a copied value: an alphanumeric token that occurs in the
  user and tool messages of the trajectory but not in its tool schemas (so not a tool or
  argument name), after a token that is not one;
* ``continuation``: such a token right after another one (the rest of a value: pure copying
  once its start is right);
* ``other``: every other supervised token (JSON structure, names, prose).

A model that copies gets ``continuation`` near 1; one that does not is near chance (among the
ten digits, most values being numbers). Used in docs/synthetic_data.md; ``bench_values.py``
measures with :func:`render_classes` and :func:`teacher_forced` during training.

Usage::

    python scripts/value_accuracy.py MODEL_DIR DATA.jsonl [--n 150]

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable
from itertools import islice
from pathlib import Path
from typing import Any

import torch


def classes(tokenizer: Any, traj: Any, labels: list[int]) -> list[str | None]:
    """The class of each label position (``None`` where not supervised)."""
    from xlam.data.labels import IGNORE_INDEX

    seen = " ".join(m.content or "" for m in traj.conversation if m.role in ("user", "tool"))
    schemas = json.dumps(traj.tools, ensure_ascii=False)
    out: list[str | None] = []
    prev_value = False
    for lab in labels:
        if lab == IGNORE_INDEX:
            out.append(None)
            prev_value = False
            continue
        piece = tokenizer.decode([lab]).strip()
        value = bool(piece) and piece.isalnum() and piece in seen and piece not in schemas
        out.append(("continuation" if prev_value else "first") if value else "other")
        prev_value = value
    return out


def render_classes(
    tokenizer: Any, trajectories: Iterable[Any], max_len: int | None = None
) -> list[tuple[list[int], list[int], list[str | None]]]:
    """Rendered samples as ``(input_ids, labels, classes)``; over ``max_len`` tokens: left out."""
    from xlam.data.render import Renderer

    renderer = Renderer(tokenizer)
    out = []
    for traj in trajectories:
        for s in renderer.render(traj):
            if max_len is None or len(s.input_ids) <= max_len:
                out.append((s.input_ids, s.labels, classes(tokenizer, traj, s.labels)))
    return out


def teacher_forced(
    model: Any, samples: list[tuple[list[int], list[int], list[str | None]]]
) -> dict:
    """Accuracy and token count of each class over ``samples`` (from :func:`render_classes`)."""
    right = {"first": 0, "continuation": 0, "other": 0}
    total = dict.fromkeys(right, 0)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for input_ids, labels, kinds in samples:
            pred = model(input_ids=torch.tensor([input_ids])).logits[0].argmax(-1)
            for i, kind in enumerate(kinds):
                if kind is None or i == 0:
                    continue
                total[kind] += 1
                right[kind] += int(pred[i - 1] == labels[i])
    model.train(was_training)
    return {
        k: {"accuracy": round(right[k] / total[k], 3) if total[k] else None, "tokens": total[k]}
        for k in total
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", type=Path, help="a model folder (a run's export/)")
    p.add_argument("data", type=Path, help="unified trajectories (JSONL)")
    p.add_argument("--n", type=int, default=150, help="first N trajectories")
    args = p.parse_args()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from xlam.data.schema import read_trajectories

    tok = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model).eval()
    result = teacher_forced(
        model, render_classes(tok, islice(read_trajectories(args.data), args.n))
    )
    for k, v in result.items():
        print(f"{k:>13}: {v['accuracy']}  ({v['tokens']} tokens)")
    print(json.dumps(result))


if __name__ == "__main__":
    main()

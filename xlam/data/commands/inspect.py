"""``xlam-data inspect``: show rendered samples with the supervised spans highlighted.

The text is exactly what the model is trained on, rendered by the tokenizer's own chat
template; supervised tokens (the loss mask) are highlighted, every other token is coloured
by the role it came from. ``--html`` writes the same view to a file for sharing; ``--json``
prints one ``{"id", "mode", "input_ids", "labels"}`` object per sample for scripts.
"""

from __future__ import annotations

import argparse
import html
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from xlam.data.commands.errors import UserError
from xlam.data.render import (
    IGNORE_INDEX,
    MODES,
    TOOL_FORMATS,
    RenderedSample,
    Renderer,
    RenderError,
    RenderOptions,
)
from xlam.data.schema import SchemaError, read_trajectories

ROLE_STYLES = {"system": "grey50", "user": "cyan", "tool": "magenta", "assistant": "yellow"}
SUPERVISED_STYLE = "bold black on green3"
ROLE_CSS = {"system": "#777", "user": "#0e7490", "tool": "#a21caf", "assistant": "#a16207"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", metavar="IN", help="unified trajectories (JSONL)")
    parser.add_argument("--tokenizer", required=True, help="tokenizer folder (with chat template)")
    parser.add_argument(
        "-n", type=int, default=3, help="trajectories to render (0: all; default 3)"
    )
    parser.add_argument("--html", metavar="FILE", help="also write an HTML view to FILE")
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object per sample (ids and labels)"
    )
    parser.add_argument("--mode", choices=MODES, default="auto", help="render mode")
    parser.add_argument(
        "--tool-format", choices=TOOL_FORMATS, default="template", help="how tools are shown"
    )
    parser.add_argument("--max-length", type=int, default=None, help="truncate samples")
    thinking = parser.add_mutually_exclusive_group()
    thinking.add_argument(
        "--thinking", dest="enable_thinking", action="store_const", const=True, default=None
    )
    thinking.add_argument(
        "--no-thinking", dest="enable_thinking", action="store_const", const=False
    )
    parser.add_argument(
        "--no-reasoning-loss",
        dest="supervise_reasoning",
        action="store_false",
        help="do not supervise reasoning tokens",
    )
    parser.add_argument("--id", action="append", default=[], help="only these trajectory ids")
    parser.add_argument("--strict", action="store_true", help="stop at the first render problem")


def _runs(sample: RenderedSample) -> list[tuple[str, bool, list[int]]]:
    """Consecutive tokens with the same (role, supervised), to decode as whole strings."""
    runs: list[tuple[str, bool, list[int]]] = []
    roles = sample.roles or ["?"] * len(sample)
    for tok, lab, role in zip(sample.input_ids, sample.labels, roles):
        sup = lab != IGNORE_INDEX
        if runs and runs[-1][0] == role and runs[-1][1] == sup:
            runs[-1][2].append(tok)
        else:
            runs.append((role, sup, [tok]))
    return runs


def role_counts(samples: list[RenderedSample]) -> dict[str, dict[str, int]]:
    """Tokens and supervised tokens per role over ``samples``."""
    tokens: Counter[str] = Counter()
    sup: Counter[str] = Counter()
    for s in samples:
        for role, lab in zip(s.roles or ["?"] * len(s), s.labels):
            tokens[role] += 1
            sup[role] += lab != IGNORE_INDEX
    return {r: {"tokens": tokens[r], "supervised": sup[r]} for r in tokens}


def _decode(tokenizer: Any, ids: list[int]) -> str:
    return tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)


def _print_rich(samples: list[RenderedSample], renderer: Renderer) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(highlight=False)
    for s in samples:
        console.rule(
            f"[bold]{s.id}[/] · {s.mode} · {len(s)} tokens · {s.num_supervised} supervised"
        )
        text = Text()
        for role, sup, ids in _runs(s):
            text.append(
                _decode(renderer.tokenizer, ids),
                style=SUPERVISED_STYLE if sup else ROLE_STYLES.get(role, ""),
            )
        console.print(text)
    table = Table(title="tokens per role")
    for col in ("role", "tokens", "supervised"):
        table.add_column(col, justify="left" if col == "role" else "right")
    for role, c in role_counts(samples).items():
        table.add_row(role, str(c["tokens"]), str(c["supervised"]))
    console.print(table)
    legend = Text("legend: ")
    legend.append("supervised", style=SUPERVISED_STYLE)
    for role, style in ROLE_STYLES.items():
        legend.append(f" {role}", style=style)
    console.print(legend)
    console.print(_summary(renderer))


def _summary(renderer: Renderer) -> str:
    caps = ", ".join(f"{k}={v}" for k, v in renderer.capabilities.to_dict().items())
    return (
        f"template: {caps}; tool_format={renderer.tool_format}, "
        f"arguments_as_string={renderer.arguments_as_string}\n{renderer.report.format()}"
    )


def write_html(path: Path, samples: list[RenderedSample], renderer: Renderer, title: str) -> None:
    """Write a self-contained HTML page of the samples."""
    css_roles = "".join(f".r-{r}{{color:{c}}}" for r, c in ROLE_CSS.items())
    parts = [
        "<!doctype html><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;margin:2em}"
        "pre{white-space:pre-wrap;word-break:break-word;background:#fafafa;padding:1em;"
        "border:1px solid #ddd}.sup{background:#bbf7d0;color:#000;font-weight:bold}"
        f"{css_roles}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;"
        "padding:2px 8px;text-align:right}</style>",
        f"<h1>{html.escape(title)}</h1>",
        "<p>Legend: <span class='sup'>supervised</span> "
        + " ".join(f"<span class='r-{r}'>{r}</span>" for r in ROLE_CSS)
        + "</p>",
    ]
    for s in samples:
        parts.append(
            f"<h2>{html.escape(s.id)}</h2><p>{s.mode} · {len(s)} tokens · "
            f"{s.num_supervised} supervised</p><pre>"
        )
        # One string: inside <pre> a separator between spans would show as text.
        parts[-1] += (
            "".join(
                f"<span class='{'sup' if sup else f'r-{role}'}' title='{role}'>"
                f"{html.escape(_decode(renderer.tokenizer, ids))}</span>"
                for role, sup, ids in _runs(s)
            )
            + "</pre>"
        )
    parts.append("<h2>Tokens per role</h2><table><tr><th>role</th><th>tokens</th>")
    parts.append("<th>supervised</th></tr>")
    for role, c in role_counts(samples).items():
        parts.append(f"<tr><td>{role}</td><td>{c['tokens']}</td><td>{c['supervised']}</td></tr>")
    parts.append(f"</table><h2>Report</h2><pre>{html.escape(_summary(renderer))}</pre>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts), encoding="utf-8")


def run(args: argparse.Namespace) -> int:
    path = Path(args.input)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    if args.n < 0:
        raise UserError("-n must be >= 0")
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(args.tokenizer, trust_remote_code=False)
    except (OSError, ValueError) as e:
        raise UserError(f"cannot load tokenizer from {args.tokenizer}: {e}") from e
    try:
        options = RenderOptions(
            mode=args.mode,
            enable_thinking=args.enable_thinking,
            max_length=args.max_length,
            tool_format=args.tool_format,
            supervise_reasoning=args.supervise_reasoning,
            strict=args.strict,
        )
        renderer = Renderer(tokenizer, options)
    except RenderError as e:
        raise UserError(str(e)) from e

    wanted = set(args.id)
    samples: list[RenderedSample] = []
    done = 0
    try:
        for traj in read_trajectories(path):
            if wanted and traj.id not in wanted:
                continue
            samples.extend(renderer.render(traj, annotate=bool(args.html) or not args.json))
            done += 1
            if args.n and done >= args.n:
                break
    except SchemaError as e:
        raise UserError(str(e)) from e
    except RenderError as e:
        raise UserError(f"{e} [{e.kind}]") from e

    if args.json:
        for s in samples:
            print(
                json.dumps(
                    {"id": s.id, "mode": s.mode, "input_ids": s.input_ids, "labels": s.labels}
                )
            )
        print(renderer.report.format(), file=sys.stderr)
    else:
        _print_rich(samples, renderer)
    if args.html:
        write_html(Path(args.html), samples, renderer, f"xlam-data inspect {path.name}")
        print(f"wrote {args.html}", file=sys.stderr)
    return 0 if samples else 1

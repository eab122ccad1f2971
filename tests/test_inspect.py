"""``xlam-data inspect``: terminal view, HTML file, JSON lines and user errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from xlam import SAMPLE_DATA_DIR, TINY_TOKENIZER_DIR
from xlam.data.cli import main

FC = str(SAMPLE_DATA_DIR / "fc_single.jsonl")
MULTI = str(SAMPLE_DATA_DIR / "multi_turn.jsonl")
TINY = str(TINY_TOKENIZER_DIR)


def test_json_lines(capsys):
    assert main(["inspect", FC, "--tokenizer", TINY, "-n", "2", "--json"]) == 0
    out = capsys.readouterr()
    lines = [json.loads(x) for x in out.out.splitlines()]
    assert len(lines) == 2
    for d in lines:
        assert set(d) == {"id", "mode", "input_ids", "labels"}
        assert len(d["input_ids"]) == len(d["labels"])
        assert all(lab in (-100, t) for t, lab in zip(d["input_ids"], d["labels"]))
        assert any(lab != -100 for lab in d["labels"])
    assert "rendered 2/2" in out.err


def test_per_turn_mode(capsys):
    assert (
        main(["inspect", MULTI, "--tokenizer", TINY, "-n", "1", "--json", "--mode", "per_turn"])
        == 0
    )
    ids = [json.loads(x)["id"] for x in capsys.readouterr().out.splitlines()]
    assert len(ids) > 1 and all("#" in i for i in ids)


def test_terminal_and_html(tmp_path, capsys):
    page = tmp_path / "view.html"
    assert main(["inspect", MULTI, "--tokenizer", TINY, "-n", "1", "--html", str(page)]) == 0
    out = capsys.readouterr().out
    assert "multi_turn-0000" in out and "tokens per role" in out
    for role in ("system", "user", "assistant", "tool"):
        assert role in out
    html = page.read_text(encoding="utf-8")
    assert "<span class='sup'" in html and "class='r-tool'" in html
    assert "&lt;|im_end|&gt;" in html  # special tokens shown, escaped


def test_real_template(shared_fixtures, capsys):
    qwen3 = str(shared_fixtures / "tokenizers" / "qwen3")
    assert main(["inspect", MULTI, "--tokenizer", qwen3, "-n", "1", "--json"]) == 0
    out = capsys.readouterr()
    assert all(json.loads(x)["mode"] == "per_turn" for x in out.out.splitlines())
    assert "per_turn_fallback" in out.err


def test_refused_trajectories_are_reported(shared_fixtures, capsys):
    llama3 = str(shared_fixtures / "tokenizers" / "llama3")
    assert main(["inspect", FC, "--tokenizer", llama3, "-n", "2", "--json"]) == 1
    assert "tools_not_rendered x2" in capsys.readouterr().err
    code = main(["inspect", FC, "--tokenizer", llama3, "-n", "1", "--json", "--strict"])
    assert code == 2
    assert "tools_not_rendered" in capsys.readouterr().err
    # Prompt mode makes the same data trainable on this template.
    assert (
        main(["inspect", FC, "--tokenizer", llama3, "-n", "1", "--json", "--tool-format", "prompt"])
        == 0
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["inspect", "/nonexistent.jsonl", "--tokenizer", TINY], "no such file"),
        (["inspect", FC, "--tokenizer", "/nonexistent-tokenizer"], "cannot load tokenizer"),
        (["inspect", FC, "--tokenizer", TINY, "-n", "-1"], "-n must be"),
    ],
)
def test_user_errors(args, message, capsys):
    assert main(args) == 2
    assert message in capsys.readouterr().err


def test_bad_record_is_a_user_error(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"unique_trajectory_id": "x"}\n')
    assert main(["inspect", str(bad), "--tokenizer", TINY]) == 2
    assert "bad.jsonl:1" in capsys.readouterr().err


def test_console_script():
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "xlam.data.cli",
            "inspect",
            FC,
            "--tokenizer",
            TINY,
            "-n",
            "1",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[0])["id"] == "fc_single-0000"

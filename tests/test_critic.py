"""The critic (``xlam-data critique``), ``xlam-data filter`` and a source's ``min_score``.

The judge is a real HTTP server on 127.0.0.1 (:class:`conftest.FakeOpenAI`) that reads a
marker in each trajectory (``[case=<name> score=<k> #<i>]``) and answers accordingly: a
verdict, a fenced verdict, 500s, a timeout, 429 with ``Retry-After``, a closed socket,
prose and cut JSON (re-asked, then unparseable). Counts are exact; the server counts the
requests, so the cache is seen costing nothing. A local ``hf`` judge runs on a random tiny
model (nonsense answers, all counted); the real vLLM server is in ``test_serving.py``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from conftest import DROP, ENV, FakeOpenAI, chat_response, entry_point

from xlam import SAMPLE_DATA_DIR, TINY_TOKENIZER_DIR
from xlam.critic.rubric import Rubric, parse_verdict, render_trajectory, trajectory_hash
from xlam.data.cli import main
from xlam.data.mixture import SourceSpec, sources_from_config
from xlam.data.schema import Trajectory, read_trajectories
from xlam.data.scores import CriticVerdict
from xlam.data.sources import MinScoreError, filter_min_score, load_source
from xlam.utils.hydra import compose_tool_config

SECRET = "sk-live-0123456789abcdef-do-not-write"
KEY_ENV = "XLAM_JUDGE_CRED"  # a name the generic secret scan would not recognise
MARK = re.compile(r"\[case=(\w+) score=(\d) #(\d+)\]")
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def _traj(i: int, case: str = "ok", score: int = 4, source: str = "a") -> dict[str, Any]:
    return {
        "unique_trajectory_id": f"{source}-{i}",
        "source": source,
        "task_instruction": "You are a weather assistant.",
        "tools": [WEATHER],
        "conversation": [
            {"role": "user", "content": f"Weather in city {i}? [case={case} score={score} #{i}]"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": {"city": f"c{i}"}},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "name": "get_weather", "content": "14"},
            {"role": "assistant", "content": "It is 14 degrees."},
        ],
        "metadata": {"origin": {"file": "native.json", "line": i + 1}},
    }


def _write(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _verdict(score: int, reasons: str) -> str:
    return json.dumps({"score": score, "reasons": reasons})


class Judge:
    """The fake judge's behaviour per case; counts HTTP requests per trajectory."""

    def __init__(self, server: FakeOpenAI) -> None:
        self.attempts: Counter[int] = Counter()
        self._lock = threading.Lock()
        server.respond = self.respond
        server.delay = lambda body: 1.0 if self._case(body)[0] == "slow" else 0.0

    @staticmethod
    def _case(body: dict) -> tuple[str, int, int]:
        case, score, i = MARK.search(body["messages"][0]["content"]).groups()
        return case, int(score), int(i)

    def respond(self, n: int, path: str, body: dict) -> tuple:
        case, score, i = self._case(body)
        with self._lock:
            k = self.attempts[i]
            self.attempts[i] += 1
        good = (200, chat_response(_verdict(score, f"case {case} #{i}")))
        if case in ("ok", "slow"):
            return good
        if case == "fenced":
            text = f"Verdict:\n```json\n{_verdict(score, 'fenced')}\n```\nNot {{this}}."
            return 200, chat_response(text)
        if case == "always500":
            return 500, {"error": "judge crashed"}
        if case == "malformed":
            return 200, chat_response("I think it is a fine episode.")
        if case == "cutjson":
            return 200, chat_response('{"score": 4, "reasons": "cut sho')
        if case == "echo_key":  # a server that quotes the request's headers in its errors
            return 503, {"error": f"overloaded; request had {self.last_auth}"}
        if k == 0:
            first = {
                "flaky500": (500, {"error": "busy"}),
                "reask_ok": (200, chat_response("Score: four out of five")),
                "badscore": (200, chat_response(_verdict(9, "too high"))),
                "ratelimited": (429, {"error": "slow down"}, {"Retry-After": "1"}),
                "drop": (500, DROP),
            }
            return first[case]
        return good

    last_auth = ""


@pytest.fixture
def server() -> Any:
    fake = FakeOpenAI()
    yield fake
    fake.close()


def _critique(
    inp: Path, out: Path, url: str, *extra: str, model: str = "judge-m"
) -> tuple[int, dict[str, Any] | None]:
    args = [
        "critique",
        str(inp),
        "--out",
        str(out),
        "--base-url",
        url,
        "--model",
        model,
        "--api-key-env",
        KEY_ENV,
        "--retries",
        "2",
        "--backoff",
        "0.01",
        *extra,
    ]
    rc = main(args)
    report = out.with_name(out.name.removesuffix(".jsonl") + ".report.json")
    return rc, json.loads(report.read_text()) if rc == 0 else None


def _critics(out: Path) -> list[dict[str, Any]]:
    return [t.metadata["critic"] for t in read_trajectories(out)]


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, SECRET)


# --------------------------------------------------------------------------- rubric


def test_the_answer_is_read_as_a_verdict_or_refused_with_a_reason() -> None:
    assert parse_verdict('{"score": 4, "reasons": "fine"}') == (4, "fine")
    fenced = 'Sure.\n```json\n{"score": 2, "reasons": " wrong city "}\n```\nBye {x}'
    assert parse_verdict(fenced) == (2, "wrong city")
    assert parse_verdict('<think>{"score": 1}</think> {"score": 5.0, "reasons": "ok"}') == (5, "ok")
    assert parse_verdict('Verdict: {"score": 3, "reasons": "meh"} -- done') == (3, "meh")
    refused = {
        "": "empty",
        "Score: 4": "no JSON object",
        '{"score": "4", "reasons": "x"}': "must be an integer",
        '{"score": true, "reasons": "x"}': "must be an integer",
        '{"score": 6, "reasons": "x"}': "between 1 and 5",
        '{"score": 0, "reasons": "x"}': "between 1 and 5",
        '{"score": 4}': "reasons",
        '{"score": 4, "reasons": "  "}': "reasons",
        '{"score": 4, "reasons": "cut': "no JSON object",
        "[4]": "no JSON object",
    }
    for text, why in refused.items():
        with pytest.raises(ValueError, match=why):
            parse_verdict(text)


def test_the_judge_sees_the_whole_episode_and_the_prompt_is_hashed() -> None:
    t = Trajectory.from_dict(_traj(0))
    t.conversation[2].content = "x" * 5000
    text = render_trajectory(t, max_message_chars=300)
    assert "You are a weather assistant." in text and '"name": "get_weather"' in text
    assert '[2] assistant calls get_weather({"city": "c0"}) [id call_1]' in text
    assert "[3] tool get_weather (answers call_1): " + "x" * 150 + " [... 4700 characters" in text
    assert "[4] assistant: It is 14 degrees." in text
    base = Rubric("Judge this: {trajectory}")
    assert base.hash != Rubric("Judge that: {trajectory}").hash
    assert base.hash != Rubric("Judge this: {trajectory}", max_message_chars=500).hash
    with pytest.raises(ValueError, match="exactly once"):
        Rubric("no placeholder")
    # The verdict and ids are not what was judged: the same content hashes the same.
    other = Trajectory.from_dict({**_traj(0), "unique_trajectory_id": "zz", "metadata": {}})
    assert trajectory_hash(other) == trajectory_hash(Trajectory.from_dict(_traj(0)))
    # The default rubric composes, with its placeholder.
    cfg = compose_tool_config("critic", ["judge.model=m"])
    assert Rubric.load(cfg.prompt, None, cfg.max_message_chars).template.count("{trajectory}")


# --------------------------------------------------------------------------- critique


def test_critique_scores_every_trajectory_in_input_order(
    server: FakeOpenAI, tmp_path: Path
) -> None:
    rows = [_traj(i, score=1 + i % 5, source="ab"[i % 2]) for i in range(12)]
    inp = _write(tmp_path / "in.jsonl", rows)
    Judge(server)
    # The first answers come last: the output still follows the input.
    server.delay = lambda body: 0.3 - 0.02 * int(MARK.search(str(body)).group(3))
    rc, report = _critique(inp, tmp_path / "out.jsonl", server.url, "--concurrency", "4")
    assert rc == 0
    out = list(read_trajectories(tmp_path / "out.jsonl"))
    assert [t.id for t in out] == [r["unique_trajectory_id"] for r in rows]
    prompt_hash = report["prompt"]["hash"]
    for i, t in enumerate(out):
        assert t.metadata == {
            "origin": {"file": "native.json", "line": i + 1},
            "critic": {
                "score": 1 + i % 5,
                "reasons": f"case ok #{i}",
                "judge": "openai:judge-m",
                "prompt_hash": prompt_hash,
                "status": "scored",
            },
        }
        assert Trajectory.from_json(t.to_json()) == t  # the verdict round-trips in metadata
    assert server.max_in_flight == 4 and len(server.seen) == 12
    assert all(s["body"]["model"] == "judge-m" for s in server.seen)
    assert (report["read"], report["scored"], report["unparseable"], report["failed"]) == (
        12,
        12,
        0,
        0,
    )
    assert (report["cached"], report["requests"]) == (0, 12)
    assert report["scores"] == {"1": 3, "2": 3, "3": 2, "4": 2, "5": 2}
    assert {k: (v["read"], v["scored"]) for k, v in report["sources"].items()} == {
        "a": (6, 6),
        "b": (6, 6),
    }
    assert report["sources"]["a"]["mean_score"] == 2.667  # scores 1, 3, 5, 2, 4, 1


def test_a_second_run_costs_no_request(server: FakeOpenAI, tmp_path: Path) -> None:
    rows = [_traj(i) for i in range(5)] + [_traj(0)]  # a repeat is asked once
    inp = _write(tmp_path / "in.jsonl", rows)
    Judge(server)
    rc, first = _critique(inp, tmp_path / "out.jsonl", server.url)
    assert rc == 0 and len(server.seen) == 5
    assert (first["scored"], first["cached"], first["requests"]) == (6, 1, 5)
    before = (tmp_path / "out.jsonl").read_bytes()

    rc, second = _critique(inp, tmp_path / "out.jsonl", server.url)
    assert rc == 0 and len(server.seen) == 5  # not one request more
    assert (second["scored"], second["cached"], second["requests"]) == (6, 6, 0)
    assert (tmp_path / "out.jsonl").read_bytes() == before
    # Critiquing the critiqued file hits the same entries (the verdict is not content).
    rc, third = _critique(
        tmp_path / "out.jsonl",
        tmp_path / "again.jsonl",
        server.url,
        "--cache",
        str(tmp_path / "out.cache.jsonl"),
    )
    assert rc == 0 and len(server.seen) == 5 and third["cached"] == 6

    # Another prompt or another judge is another question.
    prompt = tmp_path / "rubric.txt"
    prompt.write_text("Rate this episode 1-5.\n{trajectory}\nJSON only.")
    rc, _ = _critique(inp, tmp_path / "out.jsonl", server.url, "--prompt", str(prompt))
    assert rc == 0 and len(server.seen) == 10
    assert server.seen[-1]["body"]["messages"][0]["content"].startswith("Rate this episode 1-5.\n")
    rc, _ = _critique(inp, tmp_path / "out.jsonl", server.url, model="other")
    assert rc == 0 and len(server.seen) == 15


CASES = {  # case: (status, HTTP requests, judge requests) with 2 retries and 2 re-asks
    "ok": ("scored", 1, 1),
    "fenced": ("scored", 1, 1),
    "flaky500": ("scored", 2, 1),
    "always500": ("failed", 3, 1),
    "slow": ("failed", 3, 1),
    "ratelimited": ("scored", 2, 1),
    "drop": ("scored", 2, 1),
    "reask_ok": ("scored", 2, 2),
    "badscore": ("scored", 2, 2),
    "malformed": ("unparseable", 3, 3),
    "cutjson": ("unparseable", 3, 3),
}


def test_faults_are_retried_reasked_and_counted(server: FakeOpenAI, tmp_path: Path) -> None:
    rows = [_traj(i, case, score=3, source="ab"[i % 2]) for i, case in enumerate(CASES)]
    inp = _write(tmp_path / "in.jsonl", rows)
    Judge(server)
    out = tmp_path / "out.jsonl"
    rc, report = _critique(inp, out, server.url, "--timeout", "0.25", "--concurrency", "4")
    assert rc == 0
    critics = _critics(out)
    assert [c["status"] for c in critics] == [s for s, _, _ in CASES.values()]
    # Requests as the server saw them arrive (a timed-out one is answered after the run).
    arrived = Counter(int(MARK.search(str(s["body"])).group(3)) for s in server.seen)
    assert [arrived[i] for i in range(len(CASES))] == [n for _, n, _ in CASES.values()]
    assert report["requests"] == sum(r for _, _, r in CASES.values()) == 17
    assert (report["read"], report["scored"], report["unparseable"], report["failed"]) == (
        11,
        7,
        2,
        2,
    )
    by_case = dict(zip(CASES, critics, strict=True))
    assert by_case["fenced"]["reasons"] == "fenced"
    assert by_case["always500"]["score"] is None
    assert (
        "HTTP 500" in by_case["always500"]["error"]
        and "3 attempts" in by_case["always500"]["error"]
    )
    assert "no answer within 0.25 s" in by_case["slow"]["error"]
    assert by_case["malformed"]["error"].startswith("no verdict in 3 answers; last: ")
    assert "fine episode" in by_case["malformed"]["error"]
    # 429: the second attempt waited the server's Retry-After (1 s), not the 0.01 s backoff.
    times = [s["time"] for s in server.seen if "case=ratelimited" in str(s["body"])]
    assert len(times) == 2 and times[1] - times[0] >= 1.0
    # A re-ask shows the judge its answer and what was wrong with it.
    asks = [s["body"]["messages"] for s in server.seen if "case=badscore" in str(s["body"])]
    assert [len(m) for m in asks] == [1, 3]
    assert asks[1][1] == {"role": "assistant", "content": _verdict(9, "too high")}
    assert '"score" must be between 1 and 5, got 9' in asks[1][2]["content"]
    assert {k: v["failed"] for k, v in report["sources"].items()} == {"a": 1, "b": 1}

    # Failed judgements are not cached: a re-run asks exactly those again.
    seen = len(server.seen)
    rc, again = _critique(inp, out, server.url, "--timeout", "0.25", "--concurrency", "4")
    assert rc == 0 and len(server.seen) - seen == 3 + 3
    assert (again["cached"], again["requests"], again["failed"]) == (9, 2, 2)


def test_the_api_key_is_sent_and_never_written(
    server: FakeOpenAI,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    caplog: pytest.LogCaptureFixture,
) -> None:
    judge = Judge(server)
    respond = server.respond

    def echo(n: int, path: str, body: dict) -> tuple:
        judge.last_auth = server.seen[n]["headers"].get("Authorization", "")
        return respond(n, path, body)

    server.respond = echo
    inp = _write(tmp_path / "in.jsonl", [_traj(0), _traj(1, "echo_key"), _traj(2, "malformed")])
    rc, report = _critique(inp, tmp_path / "out.jsonl", server.url)
    assert rc == 0 and report["judge"]["api_key_env"] == KEY_ENV
    assert {s["headers"]["Authorization"] for s in server.seen} == {f"Bearer {SECRET}"}
    critics = _critics(tmp_path / "out.jsonl")
    assert critics[1]["status"] == "failed" and f"<redacted:{KEY_ENV}>" in critics[1]["error"]
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(written) == 4  # in, out, cache, report
    assert not [p for p in written if SECRET in p.read_text()]
    captured = capsys.readouterr()
    assert SECRET not in captured.out + captured.err
    assert "retry 1/2" in caplog.text and SECRET not in caplog.text  # the retries' warnings


def test_an_unreachable_judge_stops_the_run_and_keeps_its_judgements(
    server: FakeOpenAI, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    inp = _write(tmp_path / "in.jsonl", [_traj(i) for i in range(6)])
    Judge(server)
    respond = server.respond
    # Three answers, then the server hangs up on everyone: down.
    server.respond = lambda n, path, body: respond(n, path, body) if n < 3 else (500, DROP)
    out = tmp_path / "out.jsonl"
    rc, _ = _critique(inp, out, server.url, "--concurrency", "1", "--retries", "1")
    assert rc == 2 and not out.exists() and not list(tmp_path.glob("*.partial"))
    err = capsys.readouterr().err
    assert "unreachable after 2 attempts" in err and "out.cache.jsonl" in err
    assert len((tmp_path / "out.cache.jsonl").read_text().splitlines()) == 3

    # Back up (another address): only the rest is asked.
    up = FakeOpenAI()
    try:
        Judge(up)
        rc, report = _critique(inp, out, up.url)
        assert rc == 0 and len(up.seen) == 3
        assert (report["scored"], report["cached"]) == (6, 3)
    finally:
        up.close()


def test_a_killed_run_redoes_only_what_was_not_judged(server: FakeOpenAI, tmp_path: Path) -> None:
    n = 24
    inp = _write(tmp_path / "in.jsonl", [_traj(i, score=1 + i % 5) for i in range(n)])
    Judge(server)
    server.delay = lambda body: 0.1
    out, cache = tmp_path / "out.jsonl", tmp_path / "out.cache.jsonl"
    cmd = [entry_point("xlam-data"), "critique", str(inp), "--out", str(out)]
    cmd += ["--base-url", server.url, "--model", "judge-m", "--api-key-env", KEY_ENV]
    proc = subprocess.Popen(
        [*cmd, "--concurrency", "2"],
        env={**ENV, KEY_ENV: SECRET},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while not (cache.is_file() and len(cache.read_text().splitlines()) >= 6):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists()
    with cache.open("a") as f:  # as if killed in the middle of a line
        f.write('{"trajectory": "0123')
    done = len(cache.read_text().splitlines()) - 1
    assert 6 <= done < n
    asked = len(server.seen)

    rc, report = _critique(inp, out, server.url, "--concurrency", "2")
    assert rc == 0 and len(server.seen) - asked == n - done
    assert (report["scored"], report["cached"], report["requests"]) == (n, done, n - done)
    assert [c["score"] for c in _critics(out)] == [1 + i % 5 for i in range(n)]
    lines = cache.read_text().splitlines()
    assert len(lines) == n + 1 and lines[done] == '{"trajectory": "0123'  # skipped, not glued


def test_a_local_hf_judge_counts_its_nonsense(
    tiny_export: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A random tiny model never answers with a verdict: every trajectory is asked twice and
    # counted unparseable, in one batch per round.
    from xlam.eval.backends.hf import HFBackend

    batches: list[int] = []
    generate = HFBackend.generate
    monkeypatch.setattr(
        HFBackend, "generate", lambda self, reqs: batches.append(len(reqs)) or generate(self, reqs)
    )
    inp = _write(tmp_path / "in.jsonl", [_traj(i) for i in range(3)])
    out = tmp_path / "out.jsonl"
    args = ["critique", str(inp), "--out", str(out), "--backend", "hf", "--model", str(tiny_export)]
    args += ["--max-reasks", "1", "--set", "judge.max_new_tokens=6", "--set", "judge.device=cpu"]
    assert main(args) == 0
    report = json.loads((tmp_path / "out.report.json").read_text())
    assert (report["read"], report["unparseable"], report["requests"]) == (3, 3, 6)
    assert batches == [3, 3]
    critics = _critics(out)
    assert {c["judge"] for c in critics} == {f"hf:{tiny_export.resolve()}"}
    assert all(c["error"].startswith("no verdict in 2 answers") for c in critics)
    assert report["judge"]["name"] == f"hf:{tiny_export.resolve()}"


def test_critique_refuses_bad_settings(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    inp = _write(tmp_path / "in.jsonl", [_traj(0)])
    out = str(tmp_path / "out.jsonl")
    assert main(["critique", str(inp), "--out", out, "--base-url", "http://127.0.0.1:1"]) == 2
    assert "judge.model not set" in capsys.readouterr().err
    assert main(["critique", str(inp), "--out", out, "--model", "m"]) == 2
    assert "judge.base_url not set" in capsys.readouterr().err
    args = ["critique", str(inp), "--out", out, "--model", "m", "--base-url", "http://x"]
    assert main([*args, "--set", "judge.no_such_key=1"]) == 2
    assert "no_such_key" in capsys.readouterr().err
    assert main([*args, "--prompt", str(tmp_path / "missing.txt")]) == 2
    assert "missing.txt" in capsys.readouterr().err
    assert main([*args, "--cache", str(inp)]) == 2
    assert "is also an input" in capsys.readouterr().err
    hf = ["critique", str(inp), "--out", out, "--backend", "hf", "--model", str(tmp_path / "no")]
    assert main(hf) == 2
    assert "HFBackend" in capsys.readouterr().err
    assert not (tmp_path / "out.jsonl").exists()


# --------------------------------------------------------------------------- filter


def _judged(rows: list[tuple[str, Any]]) -> list[dict[str, Any]]:
    """Trajectories with the given verdicts: a score, a status, or ``None`` (no critic)."""
    out = []
    for i, (source, v) in enumerate(rows):
        t = _traj(i, source=source)
        if isinstance(v, int):
            t["metadata"]["critic"] = CriticVerdict("scored", v, "r", "j", "p").to_dict()
        elif v is not None:
            t["metadata"]["critic"] = CriticVerdict(v, None, "", "j", "p", error="e").to_dict()
        out.append(t)
    return out


VERDICTS = [
    ("a", 5),
    ("a", 4),
    ("a", 3),
    ("b", 1),
    ("b", "unparseable"),
    ("b", 4),
    ("a", "failed"),
    ("b", None),
]


def test_filter_keeps_scores_at_least_k_and_counts_the_rest(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    inp = _write(tmp_path / "judged.jsonl", _judged(VERDICTS))
    out, removed = tmp_path / "good.jsonl", tmp_path / "removed.jsonl"
    args = ["filter", str(inp), "--min-score", "4", "--out", str(out), "--removed", str(removed)]
    assert main(args) == 0
    assert [t.id for t in read_trajectories(out)] == ["a-0", "a-1", "b-5"]
    assert [t.id for t in read_trajectories(removed)] == ["a-2", "b-3", "b-4", "a-6", "b-7"]
    report = json.loads((tmp_path / "good.report.json").read_text())
    assert report["min_score"] == 4 and (report["read"], report["kept"]) == (8, 3)
    assert report["removed"] == {
        "below_min_score": 2,
        "failed": 1,
        "no_critic": 1,
        "unparseable": 1,
    }
    assert report["sources"] == {
        "a": {"read": 4, "kept": 2, "removed": {"below_min_score": 1, "failed": 1}},
        "b": {
            "read": 4,
            "kept": 1,
            "removed": {"below_min_score": 1, "no_critic": 1, "unparseable": 1},
        },
    }
    assert "1 trajectories carry no critic verdict" in capsys.readouterr().out
    assert main([*args[:3], "6", *args[4:]]) == 2
    assert "--min-score must be an integer 1..5, got 6" in capsys.readouterr().err


# --------------------------------------------------------------------------- min_score


def test_min_score_in_the_mixture_filters_counts_and_refuses_unjudged(tmp_path: Path) -> None:
    data = _write(
        tmp_path / "judged.jsonl", _judged([v for v in VERDICTS if v[1] not in ("failed", None)])
    )
    specs = sources_from_config({"s": {"path": str(data), "min_score": "4"}})  # from a CLI
    assert specs[0].min_score == 4
    assert [t.id for t in load_source(specs[0])] == ["a-0", "a-1", "b-5"]
    for bad in (0, 6, 3.5):
        with pytest.raises(ValueError, match="min_score"):
            sources_from_config({"s": {"path": str(data), "min_score": bad}})

    from xlam.data.scores import ScoreCounts

    counts = ScoreCounts(5)
    kept = list(
        filter_min_score(read_trajectories(data), SourceSpec("s", str(data), min_score=5), counts)
    )
    assert [t.id for t in kept] == ["a-0"]
    assert counts.to_dict()["removed"] == {"below_min_score": 4, "unparseable": 1}

    for verdict, why in ((None, "never critiqued"), ("failed", "could not be asked")):
        rows = _judged([("a", 5), ("a", 4), ("a", verdict)])
        bad = _write(tmp_path / f"bad-{verdict}.jsonl", rows)
        spec = SourceSpec("mine", str(bad), min_score=4)
        with pytest.raises(MinScoreError) as err:
            list(load_source(spec))
        msg = str(err.value)
        assert f"{bad}: record 2 (id 'a-2')" in msg and why in msg
        assert "data.sources.mine.min_score=4" in msg and "xlam-data critique" in msg


def test_the_datamodule_drops_below_min_score_at_load(tmp_path: Path) -> None:
    from xlam.data.datamodule import TrajectoryDataModule

    rows = [json.loads(x) for x in (SAMPLE_DATA_DIR / "fc_single.jsonl").read_text().splitlines()]
    for score, r in zip((5, 4, 3, 2, 1, 5), rows, strict=False):
        r["metadata"]["critic"] = CriticVerdict("scored", score, "r", "j", "p").to_dict()
    data = _write(tmp_path / "scored.jsonl", rows[:6])

    def read(min_score: int, cache: Path | None) -> dict[str, Any]:
        source = {"s": {"path": str(data), "min_score": min_score}}
        dm = TrajectoryDataModule(
            sources=source,
            tokenizer_path=str(TINY_TOKENIZER_DIR),
            cache_dir=None if cache is None else str(cache),
            packing={"enabled": False},
        )
        dm.prepare()
        return dm.mixture_report()["s"]

    assert read(4, None)["read"] == 3 and read(4, None)["planned"] == 3
    removed = {"read": 6, "kept": 3, "removed": {"below_min_score": 3}}
    assert {k: read(4, None)["min_score"][k] for k in removed} == removed
    # The render cache is keyed by min_score: a new minimum is never served stale rows.
    assert read(4, tmp_path / "cache")["read"] == 3
    assert read(3, tmp_path / "cache")["read"] == 4
    # a cache hit reports what the build removed
    hit = read(3, tmp_path / "cache")
    assert hit["cache"] == "hit" and hit["min_score"]["removed"] == {"below_min_score": 2}
    # An unjudged record stops the cache build with its own message (not datasets').
    rows[3]["metadata"].pop("critic")
    _write(data, rows[:6])
    with pytest.raises(MinScoreError, match=re.escape(f"{data}: record 3")):
        read(4, tmp_path / "cache")

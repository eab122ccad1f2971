"""The generation backends of ``xlam-eval``.

``openai`` against a real HTTP server on 127.0.0.1 (stdlib ``http.server`` in a thread
answering in the OpenAI shapes): both APIs round-trip into completions, retries with
backoff, an unreachable endpoint is an error for the run, a refused request and garbage
output are counted per item, and the API key travels only in the header. ``hf`` on a tiny
random model exported to a folder: batched greedy equals an independent token-by-token
argmax loop, in request order, and the prompt is the training prompt. ``vllm``: only the
error paths (the real server runs in ``test_serving.py``).
"""

from __future__ import annotations

import itertools
import json
import re
import shutil
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import FakeOpenAI, chat_response, completion_response

from xlam import SAMPLE_DATA_DIR
from xlam.eval.backends import BackendUnavailable, HFBackend, OpenAIBackend, VLLMBackend
from xlam.eval.backends.vllm import VLLMServer, VLLMStartError
from xlam.eval.core import Request
from xlam.eval.prompt import PromptBuilder

# --------------------------------------------------------------------------- requests


def _rows(name: str) -> list[dict[str, Any]]:
    with (SAMPLE_DATA_DIR / f"{name}.jsonl").open() as f:
        return [json.loads(line) for line in f]


def _request(row: dict[str, Any], upto: int) -> Request:
    """The chat of ``row`` before conversation turn ``upto`` (an assistant turn)."""
    messages = [{"role": "system", "content": row["task_instruction"]}, *row["conversation"][:upto]]
    return Request(
        id=f"{row['unique_trajectory_id']}@{upto}", messages=messages, tools=row["tools"]
    )


@pytest.fixture(scope="module")
def requests_() -> list[Request]:
    # Prompts of different lengths (so a batch pads), with and without tools and history.
    fc, multi, chat = _rows("fc_single"), _rows("multi_turn"), _rows("chat")
    assert multi[0]["conversation"][3]["role"] == "assistant"
    return [
        _request(fc[0], 1),
        _request(chat[0], 1),
        _request(multi[0], len(multi[0]["conversation"]) - 1),
        _request(multi[0], 3),
        _request(chat[1], 1),
    ]


# --------------------------------------------------------------------------- a real server


@pytest.fixture
def server() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI()
    yield fake
    fake.close()


@pytest.fixture
def prompts(tiny_tokenizer: Any) -> PromptBuilder:
    return PromptBuilder(tiny_tokenizer)


def _backend(url: str, **kw: Any) -> OpenAIBackend:
    kw = {"model": "m", "api_key_env": None, "retries": 3, "backoff": 0.01, **kw}
    return OpenAIBackend(base_url=url, **kw)


# --------------------------------------------------------------------------- openai: shapes


def test_chat_round_trip(server: FakeOpenAI, requests_: list[Request]) -> None:
    server.respond = lambda n, path, body: (
        200,
        chat_response("Let me look.", [("get_weather", '{"city": "Delhi", "unit": "celsius"}')]),
    )
    backend = _backend(server.url + "/v1/", max_tokens=33, temperature=0.0)
    multi = requests_[2]  # a history with calls (arguments as objects) and tool results
    (out,) = backend.generate([multi])

    assert out.error is None and out.num_tokens == 7
    assert out.text == "Let me look."
    assert out.calls == [{"name": "get_weather", "arguments": {"city": "Delhi", "unit": "celsius"}}]
    parsed = out.parse()
    assert parsed.error is None and [(c.name, c.arguments) for c in parsed.calls] == [
        ("get_weather", {"city": "Delhi", "unit": "celsius"})
    ]

    (seen,) = server.seen
    assert seen["path"] == "/v1/chat/completions"  # "/v1" of the base URL not doubled
    body = seen["body"]
    assert (body["model"], body["max_tokens"], body["temperature"]) == ("m", 33, 0.0)
    assert body["tools"] == multi.tools
    assert [m["role"] for m in body["messages"]] == [m["role"] for m in multi.messages]
    sent_calls = [c for m in body["messages"] for c in m.get("tool_calls", [])]
    gold_calls = [c for m in multi.messages for c in m.get("tool_calls", [])]
    assert len(sent_calls) == len(gold_calls) > 0
    for sent, gold in zip(sent_calls, gold_calls, strict=True):
        # The API wants arguments as a JSON string; they decode back to the gold object.
        assert isinstance(sent["function"]["arguments"], str)
        assert json.loads(sent["function"]["arguments"]) == gold["function"]["arguments"]
        assert sent["function"]["name"] == gold["function"]["name"]
    # Every tool result answers a call that was made.
    ids = {c["id"] for c in sent_calls}
    assert all(m["tool_call_id"] in ids for m in body["messages"] if m["role"] == "tool")


def test_chat_without_tool_calls_is_parsed_as_text(server: FakeOpenAI) -> None:
    # A server without a tool parser leaves the model's call syntax in the content.
    raw = '[{"name": "f", "arguments": {"x": 1}}]'
    server.respond = lambda n, path, body: (200, chat_response(raw))
    (out,) = _backend(server.url).generate([Request("a", [{"role": "user", "content": "hi"}], [])])
    assert out.calls is None and out.text == raw
    assert [(c.name, c.arguments) for c in out.parse().calls] == [("f", {"x": 1})]
    assert "tools" not in server.seen[0]["body"]  # no tools: none sent


def test_completions_send_the_training_prompt(
    server: FakeOpenAI, prompts: PromptBuilder, requests_: list[Request]
) -> None:
    call = '[{"name": "get_weather", "arguments": {"city": "Paris"}}]'
    server.respond = lambda n, path, body: (200, completion_response(call))
    backend = _backend(server.url, api="completions", prompts=prompts, extra_body={"k": 1})
    outs = backend.generate(requests_[:2])

    expected = [prompts.prompt(r.messages, r.tools) for r in requests_[:2]]
    assert expected[0] != expected[1]
    # Sent concurrently: the server saw them in any order.
    assert sorted(s["body"]["prompt"] for s in server.seen) == sorted(expected)
    assert all(s["path"] == "/v1/completions" and s["body"]["k"] == 1 for s in server.seen)
    assert [o.prompt for o in outs] == expected
    for out in outs:
        assert out.text == call and out.num_tokens == 5
        assert [(c.name, c.arguments) for c in out.parse().calls] == [
            ("get_weather", {"city": "Paris"})
        ]


def test_completions_need_a_prompt_builder() -> None:
    with pytest.raises(ValueError, match="PromptBuilder"):
        OpenAIBackend(base_url="http://127.0.0.1:1", model="m", api="completions")
    with pytest.raises(ValueError, match="chat, completions"):
        OpenAIBackend(base_url="http://127.0.0.1:1", model="m", api="responses")


def test_requests_run_concurrently_and_come_back_in_order(server: FakeOpenAI) -> None:
    # The first requests answer last: the results still follow the requests.
    reqs = [Request(str(i), [{"role": "user", "content": f"q{i}"}], []) for i in range(6)]
    server.delay = lambda body: 0.3 - 0.05 * int(body["messages"][0]["content"][1:])
    server.respond = lambda n, path, body: (200, chat_response(body["messages"][0]["content"]))
    outs = _backend(server.url, concurrency=3).generate(reqs)
    assert [o.text for o in outs] == [f"q{i}" for i in range(6)]
    assert server.max_in_flight == 3


# --------------------------------------------------------------------------- openai: faults


def test_transient_errors_are_retried_with_backoff(server: FakeOpenAI) -> None:
    # 503, 429, then an answer: three attempts, one completion.
    answers = [(503, {"error": "loading"}), (429, {"error": "slow down"})]
    server.respond = lambda n, path, body: answers[n] if n < 2 else (200, chat_response("ok"))
    (out,) = _backend(server.url, retries=3).generate([Request("a", [{"role": "user"}], [])])
    assert out.error is None and out.text == "ok"
    assert len(server.seen) == 3


def test_retry_delay_doubles_honours_retry_after_and_is_bounded() -> None:
    from xlam.eval.backends.openai import parse_retry_after, retry_delay

    assert [retry_delay(a, 0.5, 60.0) for a in (1, 2, 3)] == [0.5, 1.0, 2.0]
    assert retry_delay(1, 0.5, 60.0, retry_after=7.0) == 7.0  # the server's wait, not less
    assert retry_delay(10, 0.5, 30.0, retry_after=120.0) == 30.0  # never past max_backoff
    jittered = [retry_delay(2, 1.0, 60.0, jitter=0.25) for _ in range(200)]
    assert all(2.0 <= d <= 2.5 for d in jittered) and len(set(jittered)) > 1
    assert [parse_retry_after(v) for v in ("3", " 1.5 ", "-2", "soon", None)] == [
        3.0,
        1.5,
        0.0,
        None,
        None,
    ]
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date in the past


def test_persistent_5xx_is_a_counted_error_after_the_retries(server: FakeOpenAI) -> None:
    server.respond = lambda n, path, body: (500, {"error": "boom"})
    (out,) = _backend(server.url, retries=2).generate([Request("a", [{"role": "user"}], [])])
    assert len(server.seen) == 3  # the first attempt and two retries
    assert "HTTP 500" in out.error and "3 attempts" in out.error and "boom" in out.error


def test_a_refused_request_is_a_counted_error_without_retry(server: FakeOpenAI) -> None:
    def respond(n: int, path: str, body: dict) -> tuple[int, Any]:
        if body["messages"][0]["content"] == "bad":
            return 400, {"error": {"message": "context length exceeded"}}
        return 200, chat_response("fine")

    server.respond = respond
    reqs = [Request(x, [{"role": "user", "content": x}], []) for x in ("good", "bad", "good")]
    outs = _backend(server.url).generate(reqs)
    assert [o.error is None for o in outs] == [True, False, True]
    assert "HTTP 400" in outs[1].error and "context length exceeded" in outs[1].error
    assert len(server.seen) == 3  # no retry of the refused one


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_endpoint_down_raises_naming_the_url() -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    backend = _backend(url, retries=2, backoff=0.01)
    with pytest.raises(BackendUnavailable) as err:
        backend.generate([Request("a", [{"role": "user", "content": "hi"}], [])])
    msg = str(err.value)
    assert f"{url}/v1/chat/completions" in msg and "3 attempts" in msg and "2 retries" in msg


def test_a_server_that_hangs_up_is_retried_then_unavailable() -> None:
    # Accepts each connection and closes it at once: a connection failure every attempt.
    # The gaps between attempts show the backoff doubling.
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[float] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            accepted.append(time.monotonic())
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    backend = _backend(url, retries=3, backoff=0.1)
    try:
        with pytest.raises(
            BackendUnavailable, match=re.escape(f"{url}/v1/chat/completions") + ".*4 attempts"
        ):
            backend.generate([Request("a", [{"role": "user", "content": "hi"}], [])])
    finally:
        listener.close()
    assert len(accepted) == 4
    gaps = [b - a for a, b in itertools.pairwise(accepted)]
    assert [g >= d for g, d in zip(gaps, (0.1, 0.2, 0.4), strict=True)] == [True] * 3


def test_garbage_output_is_a_counted_parse_error(
    server: FakeOpenAI, prompts: PromptBuilder
) -> None:
    # A truncated call from the completions API, and unparseable arguments from the chat
    # API: both come back as completions whose parse fails, never as an exception.
    server.respond = lambda n, path, body: (200, completion_response('[{"name": "f", "argu'))
    backend = _backend(server.url, api="completions", prompts=prompts)
    (out,) = backend.generate([Request("a", [{"role": "user", "content": "hi"}], [])])
    assert out.error is None and out.parse().error

    server.respond = lambda n, path, body: (
        200,
        chat_response("Sure.", [("g", '{"a": 1}'), ("f", '{"city": "Par')]),
    )
    (out,) = _backend(server.url).generate([Request("b", [{"role": "user", "content": "x"}], [])])
    assert out.calls is None
    assert '{\\"city\\": \\"Par' in out.text  # the raw arguments are kept for the record
    parsed = out.parse()
    assert parsed.error and "f" in parsed.error and parsed.calls == []

    # Non-JSON from the server for one request: that request's error, not a crash.
    server.respond = lambda n, path, body: (200, b"<html>bad gateway</html>")
    (out,) = _backend(server.url).generate([Request("c", [{"role": "user", "content": "x"}], [])])
    assert "invalid JSON" in out.error


def test_api_key_comes_from_the_environment_only(
    server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "sk-test-0123456789abcdef"
    monkeypatch.setenv("XLAM_TEST_API_KEY", secret)
    backend = _backend(server.url, api_key_env="XLAM_TEST_API_KEY")
    backend.generate([Request("a", [{"role": "user", "content": "hi"}], [])])
    assert server.seen[-1]["headers"]["Authorization"] == f"Bearer {secret}"
    described = json.dumps(backend.describe())
    assert secret not in described and "XLAM_TEST_API_KEY" in described
    assert secret not in repr(backend)

    _backend(server.url, api_key_env=None).generate([Request("b", [{"role": "user"}], [])])
    assert "Authorization" not in server.seen[-1]["headers"]


def test_credentials_in_the_url_stay_out_of_describe() -> None:
    backend = _backend("https://user:hunter2@example.invalid:8443/v1")
    assert "hunter2" not in json.dumps(backend.describe())
    assert backend.describe()["base_url"] == "https://example.invalid:8443/v1"


# --------------------------------------------------------------------------- hf


def _greedy_ids(model_dir: Path, prompt: str, steps: int) -> tuple[list[int], bool]:
    """Greedy decoding by hand: one unpadded prompt, argmax of a full forward per token.

    Returns the new token ids before EOS, and whether EOS came.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    eos = GenerationConfig.from_pretrained(model_dir).eos_token_id
    eos = set(eos if isinstance(eos, list) else [eos]) | {tok.eos_token_id}
    ids = tok(prompt, add_special_tokens=False).input_ids
    new: list[int] = []
    with torch.no_grad():
        for _ in range(steps):
            nxt = int(model(torch.tensor([ids + new])).logits[0, -1].argmax())
            if nxt in eos:
                return new, True
            new.append(nxt)
    return new, False


def _reference_greedy(model_dir: Path, prompt: str, steps: int) -> tuple[str, int]:
    """``(text, generated tokens counting EOS)`` of :func:`_greedy_ids`."""
    from transformers import AutoTokenizer

    new, stopped = _greedy_ids(model_dir, prompt, steps)
    text = AutoTokenizer.from_pretrained(model_dir).decode(new, skip_special_tokens=False)
    return text, len(new) + stopped


def test_hf_batched_greedy_equals_unbatched(
    tiny_export: Path, requests_: list[Request], tiny_tokenizer: Any
) -> None:
    steps = 10
    batched = HFBackend(str(tiny_export), batch_size=4, max_new_tokens=steps, device="cpu")
    single = HFBackend(str(tiny_export), batch_size=1, max_new_tokens=steps, device="cpu")
    outs = batched.generate(requests_)
    # In request order (batches are sorted by length inside).
    builder = PromptBuilder(tiny_tokenizer)
    assert [o.prompt for o in outs] == [builder.prompt(r.messages, r.tools) for r in requests_]
    lengths = {len(batched.tokenizer(o.prompt, add_special_tokens=False).input_ids) for o in outs}
    assert len(lengths) == len(requests_)  # every batch pads

    assert [(o.text, o.num_tokens) for o in outs] == [
        (o.text, o.num_tokens) for o in single.generate(requests_)
    ]
    assert [(o.text, o.num_tokens) for o in outs] == [
        _reference_greedy(tiny_export, o.prompt, steps) for o in outs
    ]
    assert all(o.error is None and o.calls is None for o in outs)
    assert batched.describe()["device"] == "cpu" and batched.describe()["dtype"] == "float32"


def test_hf_prompt_is_the_training_prompt(
    tiny_export: Path, requests_: list[Request], tiny_tokenizer: Any
) -> None:
    # Default: the folder's tokenizer with default render options; given: that builder's.
    default = PromptBuilder(tiny_tokenizer)
    own = PromptBuilder(tiny_tokenizer, {"tool_format": "prompt"})
    req = requests_[0]
    (a,) = HFBackend(str(tiny_export), max_new_tokens=1).generate([req])
    (b,) = HFBackend(str(tiny_export), prompts=own, max_new_tokens=1).generate([req])
    assert a.prompt == default.prompt(req.messages, req.tools)
    assert b.prompt == own.prompt(req.messages, req.tools) != a.prompt


def test_hf_stops_at_every_eos_of_the_generation_config(
    tiny_export: Path, requests_: list[Request], tmp_path: Path, tiny_tokenizer: Any
) -> None:
    # Name a token the model emits, mid-answer, as a second EOS (as gpt-oss names <|call|>):
    # the text ends before its first occurrence.
    steps = 10
    req = requests_[0]
    prompt = PromptBuilder(tiny_tokenizer).prompt(req.messages, req.tools)
    tokens, stopped = _greedy_ids(tiny_export, prompt, steps)
    assert not stopped and len(tokens) == steps
    stop = tokens[2]
    cut = tokens.index(stop)

    folder = tmp_path / "export"
    shutil.copytree(tiny_export, folder)
    gen = json.loads((folder / "generation_config.json").read_text())
    gen["eos_token_id"] = [gen["eos_token_id"], stop]
    (folder / "generation_config.json").write_text(json.dumps(gen))
    (out,) = HFBackend(str(folder), max_new_tokens=steps, device="cpu").generate([req])
    assert out.text == tiny_tokenizer.decode(tokens[:cut], skip_special_tokens=False)
    assert out.num_tokens == cut + 1


# --------------------------------------------------------------------------- vllm


def test_vllm_without_a_serving_env_says_how_to_make_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    missing = tmp_path / "no-venv" / "bin" / "python"
    with pytest.raises(FileNotFoundError, match=re.escape("scripts/setup_serving_env.sh")) as err:
        VLLMBackend(str(tmp_path), python=str(missing))
    assert str(missing) in str(err.value)
    monkeypatch.setenv("XLAM_SERVE_PYTHON", str(missing))
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        VLLMBackend(str(tmp_path))
    assert not (tmp_path / "vllm_server.log").exists()  # nothing was started


def test_vllm_server_that_exits_reports_its_log(
    tiny_export: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The training venv's python has no vLLM: the real subprocess exits at once, and the
    # error carries the log (in the working directory, the eval run dir).
    monkeypatch.chdir(tmp_path)
    with pytest.raises(VLLMStartError, match=r"(?s)exited with 1.*No module named 'vllm'"):
        VLLMBackend(str(tiny_export), python=sys.executable, startup_timeout=60)
    log = (tmp_path / "vllm_server.log").read_text()
    assert "--tool-call-parser xlam_plugin" in log and "No module named" in log


def test_vllm_server_command(tiny_export: Path) -> None:
    server = VLLMServer(tiny_export, python=sys.executable, port=12345, max_model_len=512)
    cmd = " ".join(server.cmd)
    assert f"--model {tiny_export} " in cmd and "--port 12345" in cmd
    assert "--max-model-len 512" in cmd and "--enable-auto-tool-choice" in cmd
    assert Path(server.cmd[server.cmd.index("--tool-parser-plugin") + 1]).is_file()
    assert "VIRTUAL_ENV" not in server.env
    server.stop()  # never started: nothing to do

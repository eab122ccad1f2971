"""A backend for any OpenAI-compatible endpoint (vLLM, SGLang, TGI, hosted APIs).

Two APIs: ``chat`` (``/v1/chat/completions``: the server renders the prompt with its own
template and returns ``tool_calls``) and ``completions`` (``/v1/completions`` with the
exact training prompt from :class:`~xlam.eval.prompt.PromptBuilder`; the raw text is
parsed later by :mod:`xlam.serving`). Stdlib HTTP only: no client library to pin.

An endpoint that cannot be reached after the retries raises :class:`BackendUnavailable`
(the whole run is void); a request the server refuses (4xx, or 429/5xx/timeouts after the
retries) comes back as a :class:`~xlam.eval.core.Completion` with ``error``, counted.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import logging
import os
import random
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from xlam.eval.backends.hf import render_prompt
from xlam.eval.core import Backend, Completion, Request
from xlam.eval.prompt import PromptBuilder

log = logging.getLogger(__name__)

APIS = ("chat", "completions")


class BackendUnavailable(RuntimeError):
    """The endpoint could not be reached: an error for the whole run, not an item verdict."""


class _Failed(Exception):
    """A request that failed for itself (it becomes ``Completion.error``)."""


def api_root(base_url: str) -> str:
    """``base_url`` with ``/v1`` appended unless it already ends with it."""
    url = base_url.rstrip("/")
    return url if url.endswith("/v1") else f"{url}/v1"


def _public_url(url: str) -> str:
    # A base URL may carry credentials (https://user:token@host); records never do.
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def chat_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Request messages in the OpenAI wire format.

    Call arguments become JSON strings, every call gets an id (``call_<turn>_<k>`` when it
    has none) and a tool message without ``tool_call_id`` answers the next unanswered call
    of the turn before it. Fields the API does not define (``reasoning``) are dropped.
    """
    out: list[dict[str, Any]] = []
    pending: list[str] = []
    for i, m in enumerate(messages):
        role = m["role"]
        msg: dict[str, Any] = {"role": role, "content": m.get("content") or ""}
        if role == "assistant" and m.get("tool_calls"):
            calls = []
            for k, c in enumerate(m["tool_calls"]):
                fn = c.get("function", c)
                args = fn.get("arguments")
                if not isinstance(args, str):
                    args = json.dumps({} if args is None else args, ensure_ascii=False)
                calls.append(
                    {
                        "id": c.get("id") or f"call_{i}_{k}",
                        "type": "function",
                        "function": {"name": fn["name"], "arguments": args},
                    }
                )
            msg["tool_calls"] = calls
            msg["content"] = m.get("content") or None
            pending = [c["id"] for c in calls]
        elif role == "tool":
            call_id = m.get("tool_call_id") or (pending[0] if pending else "")
            if call_id in pending:
                pending.remove(call_id)
            msg["tool_call_id"] = call_id
            if m.get("name"):
                msg["name"] = m["name"]
        out.append(msg)
    return out


def chat_tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tools as ``{"type": "function", "function": schema}`` (bare schemas are wrapped)."""
    return [t if "function" in t else {"type": "function", "function": t} for t in tools]


def _raw_calls_text(content: str, tool_calls: list[dict[str, Any]]) -> str:
    # Calls whose arguments are not a JSON object, as text our parser reads and rejects
    # ("arguments of 'f' are not valid JSON"): a counted parse error that keeps the raw.
    raw = [
        {"name": (c.get("function") or {}).get("name"), "arguments": _raw_arguments(c)}
        for c in tool_calls
    ]
    calls = json.dumps(raw, ensure_ascii=False)
    return f"{content}\n{calls}" if content else calls


def _raw_arguments(call: dict[str, Any]) -> str:
    args = (call.get("function") or {}).get("arguments")
    return args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)


def _parse_calls(tool_calls: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """``[{"name", "arguments": dict}]``, or ``None`` when any call is malformed."""
    calls = []
    for c in tool_calls:
        fn = c.get("function") or {}
        name, args = fn.get("name"), fn.get("arguments")
        if not isinstance(name, str) or not name:
            return None
        if isinstance(args, str):
            if not args.strip():
                args = {}  # some servers send "" for a call without arguments
            else:
                try:
                    args = json.loads(args)
                except json.JSONDecodeError:
                    return None
        if not isinstance(args, dict):
            return None
        calls.append({"name": name, "arguments": args})
    return calls


class OpenAIBackend(Backend):
    """Generates through an OpenAI-compatible HTTP endpoint.

    Args:
        base_url: The server, e.g. ``http://127.0.0.1:8000`` (``/v1`` is appended unless
            present).
        model: The served model name.
        api_key_env: Name of the environment variable holding the API key (sent as a
            Bearer token when set); the key itself is never a config value.
        api: ``chat`` or ``completions`` (the training prompt as text; needs ``prompts``).
        prompts: Renders the training prompt (``completions``).
        max_tokens: Generation limit per request.
        temperature: Sampling temperature (0: greedy).
        timeout: Seconds per HTTP request.
        retries: Retries after the first attempt on connection errors, timeouts, 429, 5xx.
        backoff: First retry delay in seconds; doubles per retry (see :func:`retry_delay`).
        jitter: Each delay grows by up to this fraction of itself, at random.
        max_backoff: Longest delay between two attempts, a server's ``Retry-After``
            included (before jitter).
        concurrency: Requests in flight at once.
        batch_size: Requests a suite hands over at once.
        model_dir: Unused (the app passes it to every backend).
        extra_body: Server-specific request fields (vLLM's ``skip_special_tokens``).
    """

    name = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str | None = "OPENAI_API_KEY",
        api: str = "chat",
        prompts: PromptBuilder | None = None,
        max_tokens: int = 256,
        temperature: float = 0.0,
        timeout: float = 60.0,
        retries: int = 3,
        backoff: float = 1.0,
        jitter: float = 0.25,
        max_backoff: float = 60.0,
        concurrency: int = 4,
        batch_size: int = 16,
        model_dir: str | None = None,
        extra_body: dict[str, Any] | None = None,
        **_: Any,
    ) -> None:
        if api not in APIS:
            raise ValueError(f"backend.api must be one of {', '.join(APIS)}, got {api!r}")
        if api == "completions" and prompts is None:
            raise ValueError(
                "backend.api=completions sends the training prompt as text and needs a "
                "PromptBuilder (the model's tokenizer and render options): pass prompts="
            )
        if retries < 0 or concurrency < 1 or batch_size < 1:
            raise ValueError(
                f"need retries >= 0, concurrency >= 1, batch_size >= 1; got {retries}, "
                f"{concurrency}, {batch_size}"
            )
        if backoff < 0 or jitter < 0 or max_backoff < 0:
            raise ValueError(
                f"need backoff, jitter and max_backoff >= 0; got {backoff}, {jitter}, {max_backoff}"
            )
        self.base_url = api_root(base_url)
        self.model = model
        self.api = api
        self.prompts = prompts
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.jitter = jitter
        self.max_backoff = max_backoff
        self.concurrency = concurrency
        self.batch_size = batch_size
        self.extra_body = dict(extra_body or {})
        self.api_key_env = api_key_env
        # Read once from the environment; kept out of describe(), logs and messages.
        self._api_key = os.environ.get(api_key_env) if api_key_env else None
        self.endpoint = f"{self.base_url}/{'chat/completions' if api == 'chat' else 'completions'}"
        self._shown = _public_url(self.endpoint)  # the endpoint as messages name it

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "base_url": _public_url(self.base_url),
            "model": self.model,
            "api": self.api,
            "api_key_env": self.api_key_env,
            "api_key_set": self._api_key is not None,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "retries": self.retries,
            "concurrency": self.concurrency,
        }

    def generate(self, requests: list[Request]) -> list[Completion]:
        if not requests:
            return []
        workers = min(self.concurrency, len(requests))
        if workers == 1:
            return [self._one(r) for r in requests]
        pool = ThreadPoolExecutor(workers, thread_name_prefix="xlam-openai")
        try:
            futures = [pool.submit(self._one, r) for r in requests]
            return [f.result() for f in futures]
        finally:
            # An unreachable endpoint fails the run: do not send the queued requests too.
            pool.shutdown(wait=True, cancel_futures=True)

    def _one(self, request: Request) -> Completion:
        prompt = None
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
        }
        if self.api == "chat":
            body["messages"] = chat_messages(request.messages)
            if request.tools:
                body["tools"] = chat_tools(request.tools)
        else:
            assert self.prompts is not None
            prompt = render_prompt(self.prompts, request)
            body["prompt"] = prompt
        body.update(self.extra_body)
        try:
            data = self._post(body)
            return self._completion(data, prompt)
        except _Failed as e:
            return Completion(error=str(e), prompt=prompt)

    def _completion(self, data: Any, prompt: str | None) -> Completion:
        try:
            choice = data["choices"][0]
            usage = data.get("usage") or {}
            num_tokens = int(usage.get("completion_tokens") or 0)
            if self.api == "completions":
                return Completion(text=choice["text"] or "", prompt=prompt, num_tokens=num_tokens)
            message = choice["message"]
        except (KeyError, IndexError, TypeError, AttributeError, ValueError) as e:
            shown = self._scrub(json.dumps(data)[:300])
            raise _Failed(f"unexpected response from {self._shown}: {shown} ({e!r})") from None
        content = message.get("content") or ""
        tool_calls = message.get("tool_calls") or []
        if not tool_calls:
            # No structured calls: the content is parsed as text (a server without a tool
            # parser leaves the model's call syntax there).
            return Completion(text=content, num_tokens=num_tokens)
        calls = _parse_calls(tool_calls)
        if calls is None:
            return Completion(text=_raw_calls_text(content, tool_calls), num_tokens=num_tokens)
        return Completion(text=content, calls=calls, num_tokens=num_tokens)

    def _scrub(self, text: str) -> str:
        # A server may quote the request's headers back in an error: never pass the key on.
        if self._api_key and self._api_key in text:
            return text.replace(self._api_key, f"<redacted:{self.api_key_env}>")
        return text

    def _post(self, body: dict[str, Any]) -> Any:
        """The response JSON, retrying transient failures with exponential backoff.

        Raises:
            BackendUnavailable: The endpoint could not be reached after the retries.
            _Failed: The server refused this request (4xx, or 429/5xx/timeouts throughout).
        """
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        data = json.dumps(body, ensure_ascii=False).encode()
        attempts = self.retries + 1
        unreachable = False
        last = ""
        retry_after: float | None = None
        for attempt in range(attempts):
            if attempt:
                delay = retry_delay(
                    attempt, self.backoff, self.max_backoff, self.jitter, retry_after
                )
                retry_after = None
                log.warning(
                    "%s: %s; retry %d/%d in %.2g s",
                    self._shown,
                    last,
                    attempt,
                    self.retries,
                    delay,
                )
                time.sleep(delay)
            req = urllib.request.Request(self.endpoint, data=data, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    raw = resp.read()
            except urllib.error.HTTPError as e:
                detail = self._scrub(_error_detail(e))
                if e.code == 429 or e.code >= 500:
                    unreachable, last = False, f"HTTP {e.code}: {detail}"
                    retry_after = parse_retry_after(e.headers.get("Retry-After"))
                    continue
                raise _Failed(f"HTTP {e.code} from {self._shown}: {detail}") from None
            except TimeoutError:
                unreachable, last = False, f"no answer within {self.timeout} s"
                continue
            except urllib.error.URLError as e:
                if isinstance(e.reason, TimeoutError):
                    unreachable, last = False, f"no answer within {self.timeout} s"
                else:
                    unreachable, last = True, f"connection failed: {e.reason}"
                continue
            except (ConnectionError, http.client.HTTPException) as e:
                # Refused, reset, or closed before a status line: nobody is serving.
                unreachable, last = True, f"connection failed: {e!r}"
                continue
            try:
                return json.loads(raw)
            except ValueError:
                shown = self._scrub(repr(raw[:200]))
                raise _Failed(f"{self._shown} answered with invalid JSON: {shown}") from None
        tried = f"{attempts} attempt{'s' if attempts > 1 else ''} ({self.retries} retries)"
        if unreachable:
            raise BackendUnavailable(
                f"the endpoint {self._shown} is unreachable after {tried}, "
                f"backoff from {self.backoff} s: {last}. Is the server running at "
                f"{_public_url(self.base_url)}?"
            )
        raise _Failed(f"{self._shown} failed after {tried}: {last}")


def retry_delay(
    attempt: int,
    backoff: float,
    max_backoff: float,
    jitter: float = 0.0,
    retry_after: float | None = None,
) -> float:
    """Seconds to wait before retry ``attempt`` (1 for the first retry).

    ``backoff × 2^(attempt-1)``, at least the server's ``Retry-After``, at most
    ``max_backoff``; then up to ``jitter`` of itself more, at random, so that clients refused
    together do not all come back together.
    """
    delay = backoff * 2 ** (attempt - 1)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return min(delay, max_backoff) * (1.0 + jitter * random.random())


def parse_retry_after(value: str | None) -> float | None:
    """A ``Retry-After`` header in seconds (delta-seconds or an HTTP date); ``None`` if unusable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    return max(0.0, seconds) if seconds == seconds else None  # NaN: unusable


def _error_detail(e: urllib.error.HTTPError) -> str:
    try:
        body = e.read()[:500].decode(errors="replace")
    except OSError:
        body = ""
    return body.strip() or str(e.reason)


__all__ = [
    "BackendUnavailable",
    "OpenAIBackend",
    "api_root",
    "chat_messages",
    "chat_tools",
    "parse_retry_after",
    "retry_delay",
]

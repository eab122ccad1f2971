"""The critic run: every trajectory of a file judged once, in order, resumable.

A judge is an eval backend (:mod:`xlam.eval.backends`): ``openai`` (any OpenAI-compatible
endpoint; its retries, backoff, ``Retry-After`` and timeouts) or ``hf`` (transformers on a
local folder). :func:`critique` reads the input, asks the judge with the rubric, re-asks a
bounded number of times when the answer is not a verdict, writes each judgement to the
cache as it arrives and the output in input order, then the report. A trajectory always
reaches the output, with ``metadata.critic.status`` ``scored``, ``unparseable`` or
``failed``; an unreachable endpoint stops the run (what was judged stays in the cache).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xlam.critic.cache import Key, VerdictCache
from xlam.critic.rubric import Rubric, VerdictParseError, parse_verdict, reask, trajectory_hash
from xlam.data.schema import Trajectory, read_trajectories
from xlam.data.scores import CRITIC_KEY, STATUSES, CriticVerdict
from xlam.eval.backends.openai import BackendUnavailable, OpenAIBackend
from xlam.eval.core import Backend, Request
from xlam.utils.run_record import redact, secret_values

log = logging.getLogger(__name__)
_MAX_SHOWN = 300  # characters of a bad answer kept in an unparseable verdict


@dataclass
class Judge:
    """A backend as a judge.

    Attributes:
        backend: Generates the answers.
        name: The judge in verdicts and cache keys: ``openai:<model>`` or
            ``<backend>:<model folder>``.
        workers: Threads asking at once (an HTTP endpoint's ``concurrency``; 1 for a local
            model, which batches instead).
        unit: Trajectories per ``generate`` call (1 over HTTP; the batch size locally).
        secrets: ``{value: variable}`` replaced in every text the run writes.
    """

    backend: Backend
    name: str
    workers: int
    unit: int
    secrets: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, backend: Backend) -> Judge:
        secrets = secret_values()
        key_env = getattr(backend, "api_key_env", None)
        if key_env and os.environ.get(key_env):
            # Whatever the variable is called, its value is a secret here.
            secrets[os.environ[key_env]] = key_env
        if isinstance(backend, OpenAIBackend):
            return cls(backend, f"openai:{backend.model}", backend.concurrency, 1, secrets)
        # A local model: one generate call at a time, batched.
        model_dir = getattr(backend, "model_dir", None)
        name = f"{backend.name}:{Path(model_dir).resolve()}" if model_dir else backend.name
        return cls(backend, name, 1, max(1, backend.batch_size), secrets)

    def describe(self) -> dict[str, Any]:
        info = {**self.backend.describe(), "name": self.name, "workers": self.workers}
        return redact({**info, "backend": self.backend.name}, self.secrets)


def build_judge(cfg: Any) -> Judge:
    """The judge of a composed ``conf/critic.yaml`` (its ``judge`` node).

    Raises:
        ValueError: A required setting is missing (naming it).
    """
    import hydra
    from omegaconf import OmegaConf

    node = cfg.judge
    missing = [f"judge.{k}" for k in node if OmegaConf.is_missing(node, k)]
    if missing:
        raise ValueError(f"{', '.join(missing)} not set (--model, --base-url, or --set KEY=VALUE)")
    # model_dir: the folder of a local judge; an HTTP judge ignores it.
    backend = hydra.utils.instantiate(node, model_dir=str(node.model))
    return Judge.of(backend)


def judge_batch(
    judge: Judge, rubric: Rubric, trajs: list[Trajectory], max_reasks: int
) -> list[tuple[CriticVerdict, int]]:
    """``(verdict, requests)`` per trajectory: ask, then re-ask each bad answer.

    Raises:
        BackendUnavailable: The endpoint cannot be reached (the run stops).
    """
    convs = [rubric.messages(t) for t in trajs]
    out: list[CriticVerdict | None] = [None] * len(trajs)
    requests = [0] * len(trajs)
    pending = list(range(len(trajs)))

    def verdict(status: str, **kw: Any) -> CriticVerdict:
        kw = redact(kw, judge.secrets)  # an error body may echo what was sent
        return CriticVerdict(status, judge=judge.name, prompt_hash=rubric.hash, **kw)

    for round_ in range(max_reasks + 1):
        reqs = [Request(trajs[i].id, convs[i], []) for i in pending]
        try:
            completions = judge.backend.generate(reqs)
        except BackendUnavailable:
            raise
        except Exception as e:  # one bad batch (a prompt the template refuses) is counted
            for i in pending:
                out[i] = verdict("failed", error=f"{type(e).__name__}: {e}")
            break
        retry = []
        for i, c in zip(pending, completions, strict=True):
            requests[i] += 1
            if c.error is not None:
                out[i] = verdict("failed", error=c.error)
                continue
            try:
                score, reasons = parse_verdict(c.text)
            except VerdictParseError as e:
                if round_ == max_reasks:
                    out[i] = verdict(
                        "unparseable",
                        error=f"no verdict in {requests[i]} answers; last: {e}: "
                        f"{c.text[:_MAX_SHOWN]!r}",
                    )
                else:
                    convs[i] = [
                        *convs[i],
                        {"role": "assistant", "content": c.text},
                        {"role": "user", "content": reask(str(e))},
                    ]
                    retry.append(i)
                continue
            out[i] = verdict("scored", score=score, reasons=reasons)
        pending = retry
        if not pending:
            break
    done = [v for v in out if v is not None]
    assert len(done) == len(trajs)  # every path above gives a verdict
    return list(zip(done, requests, strict=True))


@dataclass
class Tally:
    """Counts of verdicts: ``read == scored + unparseable + failed``.

    ``cached`` counts the trajectories answered without a request (from the cache, or a
    repeat of one judged earlier in the run).
    """

    read: int = 0
    status: Counter[str] = field(default_factory=Counter)
    cached: int = 0
    scores: Counter[int] = field(default_factory=Counter)

    def add(self, verdict: CriticVerdict, cached: bool) -> None:
        self.read += 1
        self.status[verdict.status] += 1
        self.cached += cached
        if verdict.score is not None:
            self.scores[verdict.score] += 1

    def to_dict(self) -> dict[str, Any]:
        n = sum(self.scores.values())
        mean = sum(k * v for k, v in self.scores.items()) / n if n else None
        return {
            "read": self.read,
            **{s: self.status[s] for s in STATUSES},
            "cached": self.cached,
            "mean_score": None if mean is None else round(mean, 3),
            "scores": {str(k): self.scores[k] for k in sorted(self.scores)},
        }


@dataclass
class CritiqueReport:
    """A run's counts, in total and per source; ``requests``: judge requests made (asks
    and re-asks; HTTP retries are the backend's)."""

    total: Tally = field(default_factory=Tally)
    sources: dict[str, Tally] = field(default_factory=dict)
    requests: int = 0

    def add(self, source: str, verdict: CriticVerdict, cached: bool) -> None:
        self.total.add(verdict, cached)
        self.sources.setdefault(source, Tally()).add(verdict, cached)

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.total.to_dict(),
            "requests": self.requests,
            "sources": {name: t.to_dict() for name, t in sorted(self.sources.items())},
        }


def critique(
    input: str | Path,
    out: str | Path,
    judge: Judge,
    rubric: Rubric,
    cache: str | Path,
    max_reasks: int = 2,
    on_progress: Callable[[int], None] | None = None,
) -> CritiqueReport:
    """Judge every trajectory of ``input`` and write them, in order, to ``out``.

    Args:
        input: Unified JSONL.
        out: Unified JSONL with ``metadata.critic`` (written whole at the end).
        judge: The judge.
        rubric: What it is asked.
        cache: The judgement cache file (read, then appended to).
        max_reasks: Re-asks after an answer that is not a verdict.
        on_progress: Called with the number of trajectories written so far.

    Raises:
        BackendUnavailable: The endpoint cannot be reached; ``out`` is not written.
        SchemaError: A line of ``input`` is not a trajectory.
    """
    if max_reasks < 0:
        raise ValueError(f"max_reasks must be >= 0, got {max_reasks}")
    out = Path(out)
    store = VerdictCache(cache)
    report = CritiqueReport()
    partial = out.with_name(out.name + ".partial")
    out.parent.mkdir(parents=True, exist_ok=True)
    pool = ThreadPoolExecutor(judge.workers, thread_name_prefix="xlam-critic")
    running: dict[Future, list[Key]] = {}
    waiting: dict[Key, list[int]] = {}  # one request per distinct trajectory in flight
    ready: dict[int, tuple[CriticVerdict, bool]] = {}
    held: dict[int, Trajectory] = {}
    batch: list[tuple[Key, Trajectory]] = []
    # Trajectories read but not written yet: a slow answer holds back at most this many.
    window = max(256, 4 * judge.workers * judge.unit)
    written = 0

    def submit() -> None:
        trajs = [t for _, t in batch]
        running[pool.submit(judge_batch, judge, rubric, trajs, max_reasks)] = [k for k, _ in batch]
        batch.clear()

    def settle(fut: Future) -> None:
        keys = running.pop(fut)
        for key, (verdict, n) in zip(keys, fut.result(), strict=True):
            report.requests += n
            store.put(key, verdict, n)
            for j, idx in enumerate(waiting.pop(key)):
                ready[idx] = (verdict, j > 0)

    def wait_some() -> None:
        if batch:  # nothing more is read while waiting: a partial batch goes now
            submit()
        done, _ = wait(list(running), return_when=FIRST_COMPLETED)
        for fut in done:
            settle(fut)

    try:
        with partial.open("w", encoding="utf-8") as f:

            def flush() -> None:
                nonlocal written
                while written in ready:
                    verdict, cached = ready.pop(written)
                    t = held.pop(written)
                    t.metadata[CRITIC_KEY] = verdict.to_dict()
                    f.write(t.to_json() + "\n")
                    report.add(t.source, verdict, cached)
                    written += 1
                if on_progress is not None:
                    on_progress(written)

            for i, t in enumerate(read_trajectories(input)):
                key = (trajectory_hash(t), judge.name, rubric.hash)
                held[i] = t
                hit = store.get(key)
                if hit is not None:
                    ready[i] = (hit, True)
                elif key in waiting:
                    waiting[key].append(i)
                else:
                    waiting[key] = [i]
                    batch.append((key, t))
                    if len(batch) >= judge.unit:
                        submit()
                while len(running) >= 2 * judge.workers or i + 1 - written >= window:
                    wait_some()
                    flush()
                flush()
            while batch or running:
                wait_some()
                flush()
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        for fut in [f for f in running if f.done() and not f.cancelled()]:
            if fut.exception() is None:  # judgements already paid for go to the cache
                settle(fut)
        partial.unlink(missing_ok=True)
        raise
    finally:
        store.close()
    pool.shutdown()
    os.replace(partial, out)
    return report


def run_critique(
    input: Path,
    out: Path,
    cfg: Any,
    cache: Path,
    report_path: Path,
    on_progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Build the judge and rubric of ``cfg``, run :func:`critique`, write the report JSON."""
    rubric = Rubric.load(cfg.prompt, cfg.prompt_file, int(cfg.max_message_chars))
    judge = build_judge(cfg)
    t0 = time.perf_counter()
    try:
        report = critique(
            input, out, judge, rubric, cache, int(cfg.max_reasks), on_progress=on_progress
        )
    finally:
        judge.backend.close()
    summary = {
        "input": str(input),
        "output": str(out),
        "cache": str(cache),
        "judge": judge.describe(),
        "prompt": {"source": rubric.source, "hash": rubric.hash},
        "max_reasks": int(cfg.max_reasks),
        **report.to_dict(),
        "seconds": round(time.perf_counter() - t0, 3),
    }
    summary = redact(summary, judge.secrets)
    report_path.parent.mkdir(parents=True, exist_ok=True)
    report_path.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


__all__ = [
    "CritiqueReport",
    "Judge",
    "Tally",
    "build_judge",
    "critique",
    "judge_batch",
    "run_critique",
]

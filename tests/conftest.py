"""Shared test fixtures and helpers.

Fixtures: offline mode, the shared real-data folder, the tiny tokenizer and a random tiny
model exported like a training run. Helpers: the real
CLIs in a subprocess, the overrides that quieten a run, a tiny model config, readers of
what a run writes (``csv/metrics.csv``, ``debug/batches-rank<r>.jsonl``), and a local
OpenAI-shaped HTTP server (:class:`FakeOpenAI`). Test modules
import the helpers as ``from conftest import ...``: under pytest's default ``prepend``
import mode ``tests/`` is on ``sys.path`` and this file is the module ``conftest``.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TESTS_DIR = Path(__file__).resolve().parent
ROOT = TESTS_DIR.parent


def entry_point(name: str) -> str:
    """Path of a console script (``xlam-train``) of the environment running the tests."""
    return shutil.which(name) or str(Path(sys.executable).parent / name)


XLAM_TRAIN = entry_point("xlam-train")
XLAM_EXPORT = entry_point("xlam-export")
XLAM_EVAL = entry_point("xlam-eval")

# For subprocesses: offline, full Hydra tracebacks in the failure message, and tests/ on
# PYTHONPATH so a config can name a callback defined in a test module (test_x.Class).
ENV = {
    **os.environ,
    "HF_HUB_OFFLINE": "1",
    "WANDB_MODE": "offline",
    "TOKENIZERS_PARALLELISM": "false",
    "HYDRA_FULL_ERROR": "1",
    "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS_DIR), os.environ.get("PYTHONPATH")])),
}

# A run that prints neither its config nor a progress bar.
QUIET = [
    "extras.print_config=false",
    "trainer.enable_progress_bar=false",
    "callbacks.progress_bar=null",
]

# A short run: quiet, no validation, micro-batches of two packed rows.
SMALL_RUN = [*QUIET, "data.val_size=0", "data.batch_size=2"]


# Transformers config fields of a Qwen2 small enough to train in a test (build_causal_lm).
def load_script(name: str) -> Any:
    """``scripts/<name>.py`` as a module, registered in ``sys.modules`` (so that Hydra can
    import the classes it defines, e.g. bench_learn's broken-signal datamodule)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


TINY_QWEN2: dict[str, Any] = {
    "model_type": "qwen2",
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
}


def train_small(
    run: Path, *overrides: str, log_dir: Path | None = None
) -> tuple[dict[str, float], dict[str, Any]]:
    """Train the embedded default in-process with :data:`SMALL_RUN` and ``overrides``.

    The run writes to ``run``; logs, the run index and the render cache to ``log_dir``
    (default: ``logs`` beside ``run``). Returns what :func:`xlam.train.train` returns.
    """
    from xlam.train import train
    from xlam.utils.hydra import compose_config

    log_dir = run.parent / "logs" if log_dir is None else log_dir
    cfg = compose_config([*SMALL_RUN, f"paths.log_dir={log_dir}", *overrides], output_dir=run)
    return train(cfg)


def first_step_grads(
    loader: Any, tmp: Path, accumulate: int = 1, from_config: dict | None = None, **module: Any
) -> dict[str, Any]:
    """The gradients of one optimizer step of a tiny float32 CausalLMModule (seed 3, lr 0).

    ``module`` adds :class:`~xlam.models.causal_lm.CausalLMModule` arguments; names keep
    the module's ``model.`` prefix.
    """
    import lightning as L
    import torch

    from xlam import TINY_TOKENIZER_DIR
    from xlam.models.causal_lm import CausalLMModule

    class Capture(L.Callback):
        def __init__(self) -> None:
            self.grads: dict[str, Any] = {}

        def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None:
            self.grads = {
                n: p.grad.detach().clone()
                for n, p in pl_module.named_parameters()
                if p.grad is not None
            }

    lm = CausalLMModule(
        tokenizer_path=str(TINY_TOKENIZER_DIR),
        from_config=from_config or TINY_QWEN2,
        dtype="float32",
        attn_implementation="eager",
        optimizer=lambda params: torch.optim.SGD(params, lr=0.0),
        scheduler={"name": "constant"},
        seed=3,
        **module,
    )
    capture = Capture()
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accumulate_grad_batches=accumulate,
        gradient_clip_val=None,
        callbacks=[capture],
        default_root_dir=tmp,
    )
    trainer.fit(lm, train_dataloaders=loader)
    return capture.grads


def leaves(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """The non-mapping values of a nested mapping, by dotted key (``a.b.c``)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            out |= leaves(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def run_cli(
    args: Sequence[str],
    cwd: Path,
    exe: str = XLAM_TRAIN,
    timeout: int = 400,
    env: dict[str, str] | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess:
    """Run a CLI to its end; with ``check``, fail the test with its output unless it exits 0."""
    proc = subprocess.run(
        [exe, *args],
        cwd=cwd,
        env=ENV if env is None else env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


def launch_cli(args: Sequence[str], cwd: Path, exe: str = XLAM_TRAIN) -> subprocess.Popen:
    """Start a CLI in ``cwd`` (created) without waiting; stderr is kept for failure messages."""
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [exe, *args],
        cwd=cwd,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def train_rows(run: Path) -> list[dict[str, str]]:
    """The rows of ``run/csv/metrics.csv`` that log a training step, as written."""
    with (run / "csv" / "metrics.csv").open() as f:
        return [r for r in csv.DictReader(f) if r.get("train/loss")]


def step_metrics(run: Path) -> dict[int, dict[str, float]]:
    """Training metrics per optimizer step (the non-empty columns of each row)."""
    return {int(r["step"]): {k: float(v) for k, v in r.items() if v} for r in train_rows(run)}


def train_losses(run: Path) -> dict[int, float]:
    """``train/loss`` per optimizer step."""
    return {int(r["step"]): float(r["train/loss"]) for r in train_rows(run)}


def batch_records(run: Path, rank: int = 0) -> list[dict[str, Any]]:
    """The micro-batch records of ``callbacks=debug`` (none before the file exists).

    Only whole lines count: the run may still be writing the last one.
    """
    log = run / "debug" / f"batches-rank{rank}.jsonl"
    if not log.is_file():
        return []
    lines = log.read_text().splitlines(keepends=True)
    return [json.loads(x) for x in lines if x.endswith("\n") and x.strip()]


def batch_ids(run: Path, rank: int = 0) -> dict[tuple[int, int], list[str]]:
    """Sample ids per (step, micro-batch); a resumed run appends, so the last record wins."""
    return {(r["step"], r["micro"]): r["ids"] for r in batch_records(run, rank)}


@pytest.fixture(scope="session")
def shared_fixtures() -> Path:
    """The real third-party data in ``../shared/fixtures`` (or ``$XLAM_SHARED_FIXTURES``)."""
    path = Path(os.environ.get("XLAM_SHARED_FIXTURES", ROOT.parent / "shared" / "fixtures"))
    if not path.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"shared fixtures folder {path} is missing in CI")
        pytest.skip(f"shared fixtures folder {path} is absent (clone ../shared beside the repo)")
    return path


@pytest.fixture(scope="session")
def tiny_tokenizer():
    from transformers import AutoTokenizer

    from xlam import TINY_TOKENIZER_DIR

    return AutoTokenizer.from_pretrained(TINY_TOKENIZER_DIR)


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random tiny Qwen2 with the tiny tokenizer, exported like a training run."""
    from transformers import AutoTokenizer

    from xlam import TINY_TOKENIZER_DIR
    from xlam.models.components.build import build_causal_lm
    from xlam.models.export import export_hf

    tok = AutoTokenizer.from_pretrained(TINY_TOKENIZER_DIR)
    model = build_causal_lm(None, len(tok), from_config=TINY_QWEN2, seed=0)
    return export_hf(model, tok, tmp_path_factory.mktemp("tiny") / "export")


def first_samples(tokenizer, per_source: int = 3) -> list[tuple[str, object]]:
    """``(source, RenderedSample)`` of the first trajectories of each embedded source."""
    from xlam import SAMPLE_DATA_DIR
    from xlam.data.render import Renderer
    from xlam.data.schema import read_trajectories

    renderer = Renderer(tokenizer)
    out = []
    for name in ("chat", "fc_single", "multi_turn"):
        for i, t in enumerate(read_trajectories(SAMPLE_DATA_DIR / f"{name}.jsonl")):
            if i == per_source:
                break
            out.append((name, renderer.render(t)[0]))
    return out


class TinyModules(dict):
    """CausalLMModule of the default config (tiny Qwen2) per tuple of overrides, built once."""

    def __init__(self, out: Path) -> None:
        super().__init__()
        self.out = out

    def __missing__(self, overrides: tuple[str, ...]):
        import hydra

        from xlam.utils.hydra import compose_config

        module = hydra.utils.instantiate(compose_config(list(overrides), output_dir=self.out).model)
        module.configure_model()
        self[overrides] = module.eval()
        return self[overrides]


# A ``FakeOpenAI.respond`` payload: close the connection without answering.
DROP = object()


class FakeOpenAI:
    """An OpenAI-shaped HTTP server on 127.0.0.1, in a thread; ``respond`` decides each answer.

    ``respond(n, path, body)`` returns ``(status, payload)`` or ``(status, payload,
    headers)``, where ``n`` counts requests from 0 and ``payload`` is JSON-serialisable,
    ``bytes`` sent as is, or :data:`DROP` (the socket is closed with no answer). ``delay``
    gives seconds to wait before answering (past the client's timeout: a timeout).
    ``seen`` keeps every request (path, headers, body, arrival time).
    """

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.respond: Callable[[int, str, dict], tuple] = self.echo
        self.delay: Callable[[dict], float] = lambda body: 0.0
        self.in_flight = self.max_in_flight = 0
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with fake._lock:
                    n = len(fake.seen)
                    fake.seen.append(
                        {
                            "path": self.path,
                            "headers": dict(self.headers),
                            "body": body,
                            "time": time.monotonic(),
                        }
                    )
                    fake.in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                try:
                    time.sleep(fake.delay(body))
                    status, payload, *rest = fake.respond(n, self.path, body)
                finally:
                    with fake._lock:
                        fake.in_flight -= 1
                if payload is DROP:
                    self.close_connection = True
                    return
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                for name, value in (rest[0] if rest else {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client that timed out and left: the broken pipe is expected

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    @staticmethod
    def echo(n: int, path: str, body: dict) -> tuple[int, Any]:
        if path.endswith("/chat/completions"):
            return 200, chat_response(content=f"answer {n}")
        return 200, completion_response(f"text {n}")

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def chat_response(content: str | None = None, calls: Sequence[tuple[str, str]] = ()) -> dict:
    """A ``chat.completion`` answer with ``content`` and ``(name, arguments)`` calls."""
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if calls:
        message["tool_calls"] = [
            {"id": f"c{i}", "type": "function", "function": {"name": n, "arguments": a}}
            for i, (n, a) in enumerate(calls)
        ]
    return {
        "object": "chat.completion",
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 7, "total_tokens": 17},
    }


def completion_response(text: str) -> dict:
    """A ``text_completion`` answer."""
    return {
        "object": "text_completion",
        "choices": [{"index": 0, "text": text, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }

"""A vLLM OpenAI server on an export, started from the serving environment, and the backend
that evaluates through it.

vLLM pins its own transformers, so it runs from its own environment (``.venv-serve``, made
by ``scripts/setup_serving_env.sh``) as a subprocess with our tool-parser plugin
(:mod:`xlam.serving.vllm_plugin`). :class:`VLLMServer` starts and stops it (tests use it
too); :class:`VLLMBackend` talks to it through :class:`~xlam.eval.backends.openai.OpenAIBackend`.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

from xlam.eval.backends.openai import OpenAIBackend
from xlam.eval.core import Backend, Completion, Request
from xlam.eval.prompt import PromptBuilder

REPO_ROOT = Path(__file__).resolve().parents[3]
PLUGIN = Path(__file__).resolve().parents[2] / "serving" / "vllm_plugin.py"
SETUP_SCRIPT = "scripts/setup_serving_env.sh"


class VLLMStartError(RuntimeError):
    """The vLLM server exited or did not become ready; the message ends with its log."""


def serve_python(python: str | os.PathLike[str] | None = None) -> Path:
    """The serving environment's Python: ``python``, else ``$XLAM_SERVE_PYTHON``, else
    ``<repo>/.venv-serve/bin/python``.

    Raises:
        FileNotFoundError: It does not exist (the message says how to make it).
    """
    path = Path(
        python or os.environ.get("XLAM_SERVE_PYTHON") or REPO_ROOT / ".venv-serve/bin/python"
    )
    if not path.is_file():
        raise FileNotFoundError(
            f"no vLLM serving Python at {path}: run {SETUP_SCRIPT} (it makes "
            f"{REPO_ROOT / '.venv-serve'}), or point XLAM_SERVE_PYTHON or backend.python at "
            "the python of an environment with vLLM"
        )
    return path


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


class VLLMServer:
    """``python -m vllm.entrypoints.openai.api_server`` on ``model_dir`` with our plugin.

    On a machine without CUDA (vLLM's CPU backend) ``dtype=auto`` means float32 (the
    training dtype of a CPU run, so vLLM's logits match transformers') and the model runs
    eagerly; ``VLLM_CPU_KVCACHE_SPACE`` defaults to 1 GiB.

    Args:
        model_dir: The HF folder to serve.
        python: The serving environment's Python (see :func:`serve_python`).
        port: The port (``None``: a free one). The server listens on 127.0.0.1.
        served_model_name: The model name requests use.
        dtype: ``--dtype``.
        max_model_len: ``--max-model-len`` (``None``: the model's).
        extra_args: More command-line arguments.
        env: Environment variables over this process's.
        log_path: The server's stdout and stderr.
    """

    def __init__(
        self,
        model_dir: str | os.PathLike[str],
        python: str | os.PathLike[str] | None = None,
        port: int | None = None,
        served_model_name: str = "xlam",
        dtype: str = "auto",
        max_model_len: int | None = None,
        extra_args: list[str] | None = None,
        env: dict[str, str] | None = None,
        log_path: str | os.PathLike[str] = "vllm_server.log",
    ) -> None:
        self.python = serve_python(python)
        self.model_dir = Path(model_dir)
        if not self.model_dir.is_dir():
            raise FileNotFoundError(f"no model folder at {self.model_dir} to serve")
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.served_model_name = served_model_name
        cpu = not _cuda()
        self.dtype = "float32" if dtype == "auto" and cpu else dtype
        self.log_path = Path(log_path).resolve()
        self.cmd = [
            str(self.python),
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            str(self.model_dir),
            "--served-model-name",
            served_model_name,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--dtype",
            self.dtype,
            "--enable-auto-tool-choice",
            "--tool-parser-plugin",
            str(PLUGIN),
            "--tool-call-parser",
            "xlam_plugin",  # ours alone: vLLM has its own "xlam" to fall back to
        ]
        if max_model_len:
            self.cmd += ["--max-model-len", str(max_model_len)]
        if cpu:
            self.cmd.append("--enforce-eager")
        self.cmd += [str(a) for a in extra_args or []]
        self.env = {
            **os.environ,
            "HF_HUB_OFFLINE": "1",
            "VLLM_NO_USAGE_STATS": "1",
            "DO_NOT_TRACK": "1",
        }
        if cpu:
            self.env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB
        # The training venv's activation would leak into the serving env's imports.
        self.env.pop("VIRTUAL_ENV", None)
        self.env.update({k: str(v) for k, v in (env or {}).items()})
        self.proc: subprocess.Popen | None = None

    def log_tail(self, chars: int = 5000) -> str:
        """The end of the server log."""
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def start(self, timeout: float = 600.0) -> VLLMServer:
        """Start the server and wait until ``/health`` answers.

        Raises:
            VLLMStartError: The process exited, or was not ready within ``timeout`` seconds
                (then it is stopped); the message ends with the log's tail.
        """
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("w") as f:
            f.write(f"$ {' '.join(self.cmd)}\n")
            f.flush()
            # Its own process group, so that stop() also reaches vLLM's engine processes.
            self.proc = subprocess.Popen(
                self.cmd,
                stdout=f,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                start_new_session=True,
            )
        atexit.register(self.stop)
        deadline = time.monotonic() + timeout
        while True:
            code = self.proc.poll()
            if code is not None:
                self.stop()
                raise VLLMStartError(
                    f"the vLLM server exited with {code} before it was ready "
                    f"(log: {self.log_path}):\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2):
                    return self
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise VLLMStartError(
                        f"the vLLM server was not ready in {timeout:g} s "
                        f"(log: {self.log_path}):\n{self.log_tail()}"
                    ) from None
                time.sleep(0.5)

    def version(self) -> str | None:
        """vLLM's version, from the running server's ``/version``."""
        try:
            with urllib.request.urlopen(f"{self.url}/version", timeout=5) as r:
                return json.load(r).get("version")
        except (OSError, ValueError):
            return None

    def stop(self, timeout: float = 30.0) -> None:
        """Terminate the server (SIGTERM, then SIGKILL to its process group). Idempotent."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        atexit.unregister(self.stop)
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                # The leader is alive (not reaped), so its group id is still the server's.
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def __enter__(self) -> VLLMServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class VLLMBackend(Backend):
    """Serves ``model_dir`` with vLLM for the run and generates through its OpenAI API.

    The server's log is ``vllm_server.log`` in the working directory (the eval run dir).
    ``api=completions`` (default) sends the exact training prompt and keeps special tokens
    in the text, which :mod:`xlam.serving` parses; ``api=chat`` lets the server render with
    the export's chat template and parse with our plugin.

    Args:
        model_dir: The HF folder (a training export).
        prompts: Renders the training prompt; ``None``: the folder's tokenizer with default
            render options.
        python, port, served_model_name, dtype, max_model_len, extra_args, env: See
            :class:`VLLMServer`.
        startup_timeout: Seconds to wait for the server.
        api: ``completions`` or ``chat``.
        env: Environment variables for the server over this process's.
        log_path: The server's log (default ``vllm_server.log`` in the working directory).
        **openai_kwargs: :class:`OpenAIBackend` options (``max_tokens``, ``concurrency``,
            ``batch_size``, ``timeout``, ``retries``...).
    """

    name = "vllm"

    def __init__(
        self,
        model_dir: str,
        prompts: PromptBuilder | None = None,
        python: str | None = None,
        port: int | None = None,
        served_model_name: str = "xlam",
        dtype: str = "auto",
        max_model_len: int | None = None,
        extra_args: list[str] | None = None,
        startup_timeout: float = 600.0,
        api: str = "completions",
        env: dict | None = None,
        log_path: str | os.PathLike[str] | None = None,
        **openai_kwargs: Any,
    ) -> None:
        for key in ("base_url", "model", "api_key_env", "model_dir", "extra_body"):
            openai_kwargs.pop(key, None)  # ours to set
        # Fails fast (no serving env, no model folder) before anything starts.
        self.server = VLLMServer(
            model_dir,
            python=python,
            port=port,
            served_model_name=served_model_name,
            dtype=dtype,
            max_model_len=max_model_len,
            extra_args=extra_args,
            env=env,
            log_path=log_path or Path.cwd() / "vllm_server.log",
        )
        if api == "completions" and prompts is None:
            from transformers import AutoTokenizer

            tok = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
            prompts = PromptBuilder(tok)
        self.api = api
        self.client = OpenAIBackend(
            base_url=self.server.url,
            model=served_model_name,
            api_key_env=None,
            api=api,
            prompts=prompts,
            # The prompt text already holds BOS; call markers may be special tokens.
            extra_body=(
                {"add_special_tokens": False, "skip_special_tokens": False}
                if api == "completions"
                else None
            ),
            **openai_kwargs,
        )
        self.batch_size = self.client.batch_size
        self.server.start(startup_timeout)
        self.vllm_version = self.server.version()

    def generate(self, requests: list[Request]) -> list[Completion]:
        return self.client.generate(requests)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model_dir": str(self.server.model_dir),
            "served_model_name": self.server.served_model_name,
            "dtype": self.server.dtype,
            "python": str(self.server.python),
            "vllm": self.vllm_version,
            "api": self.api,
            "log": str(self.server.log_path),
            "client": self.client.describe(),
        }

    def close(self) -> None:
        self.server.stop()


__all__ = ["PLUGIN", "VLLMBackend", "VLLMServer", "VLLMStartError", "free_port", "serve_python"]

"""Eval backends: they turn :class:`~xlam.eval.core.Request` s into completions.

``hf`` generates with transformers, ``openai`` calls any OpenAI-compatible endpoint,
``vllm`` serves the export with vLLM for the run and calls it; ``oracle`` and ``constant``
need no model and prove the scoring chain.
"""

from xlam.eval.backends.hf import HFBackend
from xlam.eval.backends.openai import BackendUnavailable, OpenAIBackend
from xlam.eval.backends.oracle import ConstantBackend, OracleBackend
from xlam.eval.backends.vllm import VLLMBackend, VLLMServer, VLLMStartError

__all__ = [
    "BackendUnavailable",
    "ConstantBackend",
    "HFBackend",
    "OpenAIBackend",
    "OracleBackend",
    "VLLMBackend",
    "VLLMServer",
    "VLLMStartError",
]

"""Evaluation: ``xlam-eval`` suites (BFCL with its own checkers, held-out trajectories),
backends (transformers, OpenAI-compatible endpoints, vLLM) and eval during training.

See :mod:`xlam.eval.app` for the entry point and :mod:`xlam.eval.core` for the contract
between suites and backends.
"""

from xlam.eval.core import Backend, Completion, Request, Suite, Verdict

__all__ = ["Backend", "Completion", "Request", "Suite", "Verdict"]

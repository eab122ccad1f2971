"""Shared test fixtures: offline mode, the shared real-data folder, the tiny assets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]


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

"""xlam: train Large Action Models from heterogeneous agent trajectories."""

from pathlib import Path

__version__ = "0.1.0"

ASSETS_DIR = Path(__file__).parent / "assets"
TINY_TOKENIZER_DIR = ASSETS_DIR / "tiny_tokenizer"
SAMPLE_DATA_DIR = ASSETS_DIR / "data"

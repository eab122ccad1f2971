"""NEFTune (``model.neftune_alpha``): noise on the input embeddings in training only."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from xlam.utils.hydra import compose_config


def _module(tmp_path: Path, *overrides: str):
    cfg = compose_config(["model=tiny", *overrides], output_dir=tmp_path)
    module = instantiate(cfg.model)
    module.configure_model()
    return module


def test_noise_in_training_only_and_of_the_documented_scale(tmp_path: Path) -> None:
    alpha = 5.0
    module = _module(tmp_path, f"model.neftune_alpha={alpha}")
    emb = module.model.get_input_embeddings()
    ids = torch.randint(0, emb.num_embeddings, (3, 40))
    clean = torch.nn.functional.embedding(ids, emb.weight)
    module.train()
    noise = emb(ids) - clean
    bound = alpha / (40 * emb.embedding_dim) ** 0.5
    assert noise.abs().max() <= bound + 1e-6
    # uniform in [-b, b]: its spread fills the interval, not a sliver of it
    assert noise.abs().max() > 0.9 * bound and noise.std() > 0.5 * bound
    module.eval()
    assert torch.equal(emb(ids), clean)
    # the logits the model computes in training carry it too
    module.train()
    mask = torch.ones_like(ids)
    torch.manual_seed(0)
    a = module(ids, mask)
    torch.manual_seed(1)
    b = module(ids, mask)
    assert not torch.allclose(a, b)


def test_off_by_default_and_refuses_a_non_positive_alpha(tmp_path: Path) -> None:
    module = _module(tmp_path)
    module.train()
    emb = module.model.get_input_embeddings()
    ids = torch.randint(0, emb.num_embeddings, (2, 16))
    assert torch.equal(emb(ids), torch.nn.functional.embedding(ids, emb.weight))
    from hydra.errors import InstantiationException

    with pytest.raises(InstantiationException, match="neftune_alpha must be > 0"):
        _module(tmp_path, "model.neftune_alpha=0")

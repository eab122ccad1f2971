"""``model.conv_init=split``: half of each short convolution's channels start 3 taps wide."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import TINY_QWEN2

from xlam.models.components.build import NARROW_TAPS, build_causal_lm, short_convs
from xlam.utils.hydra import compose_config

LFM2 = {
    "model_type": "lfm2",
    "hidden_size": 64,
    "intermediate_size": 192,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "layer_types": ["conv", "full_attention"],
    "conv_L_cache": 8,
    "block_auto_adjust_ff_dim": False,
}


def test_split_narrows_the_first_half_of_the_channels_and_changes_nothing_else() -> None:
    plain = build_causal_lm(None, 300, LFM2, seed=3)
    split = build_causal_lm(None, 300, LFM2, seed=3, conv_init="split")
    (conv,) = short_convs(split)
    (ref,) = short_convs(plain)
    w, w0 = conv.weight.detach(), ref.weight.detach()
    half, taps = w.shape[0] // 2, w.shape[-1]
    assert taps == 8
    # the narrow half: the current token and the two before it, scaled by sqrt(8 / 3)
    assert torch.all(w[:half, :, : taps - NARROW_TAPS] == 0)
    torch.testing.assert_close(
        w[:half, :, taps - NARROW_TAPS :], w0[:half, :, taps - NARROW_TAPS :] * (8 / 3) ** 0.5
    )
    assert torch.all(w0[:half, :, : taps - NARROW_TAPS] != 0)
    # the wide half and every other weight: the seed's initialisation, untouched
    torch.testing.assert_close(w[half:], w0[half:])
    others = {n: p for n, p in split.named_parameters() if p is not conv.weight}
    for name, p in plain.named_parameters():
        if name in others:
            torch.testing.assert_close(others[name], p, msg=name)


def test_split_refuses_a_model_without_a_wide_short_convolution(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no depthwise convolution wider than 3"):
        build_causal_lm(None, 300, TINY_QWEN2, conv_init="split")
    with pytest.raises(ValueError, match="no depthwise convolution wider than 3"):
        build_causal_lm(None, 300, {**LFM2, "conv_L_cache": 3}, conv_init="split")
    with pytest.raises(ValueError, match="must be one of"):
        build_causal_lm(None, 300, LFM2, conv_init="decay")
    with pytest.raises(ValueError, match="holds trained weights"):
        build_causal_lm(str(tmp_path), 300, None, conv_init="split")


def test_the_copy_experiment_builds_a_split_wide_convolution(tmp_path: Path) -> None:
    """What `experiment=learn_copy` composes reaches the model the trainer builds."""
    from hydra.utils import instantiate

    cfg = compose_config(["experiment=learn_copy"], output_dir=tmp_path)
    assert cfg.model.conv_init == "split" and cfg.model.from_config.conv_L_cache == 32
    module = instantiate(cfg.model)
    module.configure_model()
    (conv,) = short_convs(module.model)
    assert conv.kernel_size == (32,)
    half = conv.weight.shape[0] // 2
    assert torch.all(conv.weight[:half, :, : 32 - NARROW_TAPS] == 0)
    assert torch.all(conv.weight[half:] != 0)

"""Model FLOPs utilisation: peak throughput of known accelerators and FLOPs per token."""

from __future__ import annotations

# Dense bf16 tensor-core peak (no sparsity), FLOP/s, from the vendors' data sheets. Order
# matters: the first substring found in the device name wins, so specific names come first.
PEAK_BF16_FLOPS: list[tuple[str, float]] = [
    ("GB200", 2.5e15),
    ("B200", 2.25e15),
    ("H200", 989e12),
    ("GH200", 989e12),
    ("H100 PCIE", 756e12),
    ("H100 NVL", 835e12),
    ("H100", 989e12),  # SXM
    ("H800", 989e12),
    ("H20", 148e12),
    ("A100", 312e12),
    ("A800", 312e12),
    ("L40S", 362e12),
    ("L40", 181e12),
    ("A6000", 155e12),
    ("A40", 150e12),
    ("A10", 125e12),
    ("L4", 121e12),
    ("RTX 4090", 165e12),
    ("RTX 3090", 71e12),
    ("MI300X", 1307e12),
    ("MI250X", 383e12),
]


def peak_flops(device_name: str | None) -> float | None:
    """Peak dense bf16 FLOP/s of a device by its name (e.g. ``NVIDIA H100 80GB HBM3``)."""
    if not device_name:
        return None
    name = device_name.upper()
    for key, flops in PEAK_BF16_FLOPS:
        if key in name:
            return flops
    return None


def flops_per_token(params: int, trainable_params: int | None = None) -> float:
    """Training FLOPs per token: ``6·N`` for full fine-tuning (Kaplan et al.).

    The forward costs ``2·N``; the backward costs ``2·N`` for activation gradients plus
    ``2·N_trainable`` for weight gradients, so a LoRA run (frozen base) costs about ``4·N``.
    Attention's sequence-length term and recomputation by gradient checkpointing are left out,
    as in the usual MFU definition.
    """
    trainable = params if trainable_params is None else trainable_params
    return 4.0 * params + 2.0 * trainable


def mfu(
    tokens_per_s_per_device: float, params: int, trainable_params: int | None, peak: float | None
) -> float | None:
    """Model FLOPs utilisation in [0, 1], or ``None`` when the device's peak is unknown."""
    if not peak:
        return None
    return tokens_per_s_per_device * flops_per_token(params, trainable_params) / peak

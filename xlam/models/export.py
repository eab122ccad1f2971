"""Export a trained model as a Hugging Face folder that transformers and vLLM load.

Two entry points share the same code: the end of ``train()`` (from the live module) and the
``xlam-export`` command (from a run directory's checkpoint, DeepSpeed shards included). LoRA
adapters are written alone in PEFT format and, merged into the base weights, as a plain model.
QLoRA adapters are merged into a base loaded in 16 bits, never into the 4-bit copy.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import torch

from xlam.models.components.build import DTYPES, build_causal_lm
from xlam.models.components.embed_tie import apply_embed_tie, merge_embed_tie
from xlam.models.components.lora import LoraSettings, apply_lora
from xlam.models.components.tokenizer import check_tokenizer_matches
from xlam.utils.strategy import strategy_kind

# Beside an export: the render options it was trained with (read by xlam-eval).
RENDER_FILE = "xlam_render.json"

log = logging.getLogger(__name__)

_PREFIXES = ("_forward_module.", "module.")


def inner_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keys of the Hugging Face model inside a LightningModule (``model.`` prefix removed)."""
    out = {}
    for k, v in state.items():
        for p in _PREFIXES:
            if k.startswith(p):
                k = k[len(p) :]
        if k.startswith("model."):
            out[k[len("model.") :]] = v
    return out


def _tokenizer_eos(tokenizer: Any, model: torch.nn.Module) -> None:
    gen = getattr(model, "generation_config", None)
    if gen is not None:
        if tokenizer.eos_token_id is not None:
            gen.eos_token_id = tokenizer.eos_token_id
        if tokenizer.pad_token_id is not None:
            gen.pad_token_id = tokenizer.pad_token_id
    if tokenizer.eos_token_id is not None:
        model.config.eos_token_id = tokenizer.eos_token_id
    if tokenizer.pad_token_id is not None:
        model.config.pad_token_id = tokenizer.pad_token_id


def export_hf(
    model: torch.nn.Module,
    tokenizer: Any,
    out_dir: str | Path,
    adapter_dir: str | Path | None = None,
    dtype: torch.dtype | None = None,
    render: dict[str, Any] | None = None,
) -> Path:
    """Save ``model`` and ``tokenizer`` to ``out_dir``; a PEFT model is merged first.

    Writes safetensors weights, the config, a generation config whose EOS is the
    tokenizer's end-of-turn token, and the tokenizer with its chat template. The merges (a
    LoRA adapter, a ``model.embed_tie``) modify ``model``: pass a copy you no longer train.

    Args:
        model: A transformers model or a peft ``PeftModel``.
        tokenizer: The tokenizer (with its chat template).
        out_dir: Folder of the merged model.
        adapter_dir: Also save the adapter alone (PEFT format) there, when ``model`` has one.
        dtype: Cast the weights before saving (``None``: as they are).
        render: The render options the model was trained with (``data.render``), written
            to :data:`RENDER_FILE` so that ``xlam-eval`` prompts the export exactly as
            training did.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if hasattr(model, "merge_and_unload"):
        if adapter_dir is not None:
            adapter = Path(adapter_dir)
            model.save_pretrained(adapter, safe_serialization=True)
            tokenizer.save_pretrained(adapter)
        model = model.merge_and_unload()
    merge_embed_tie(model)
    if dtype is not None:
        model = model.to(dtype)
    _tokenizer_eos(tokenizer, model)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    from transformers import AutoTokenizer

    loaded = AutoTokenizer.from_pretrained(out, trust_remote_code=False)
    check_tokenizer_matches(tokenizer, loaded, f"the export {out}")
    if render is not None:
        write_render_options(out, render)
    return out


def write_render_options(out_dir: str | Path, render: dict[str, Any]) -> Path:
    """Write the training render options beside an export (:data:`RENDER_FILE`)."""
    path = Path(out_dir) / RENDER_FILE
    path.write_text(json.dumps({"render": dict(render)}, indent=2, sort_keys=True) + "\n")
    return path


def read_render_options(model_dir: str | Path) -> dict[str, Any] | None:
    """The render options an export was trained with, ``None`` when it carries none."""
    path = Path(model_dir) / RENDER_FILE
    return json.loads(path.read_text())["render"] if path.is_file() else None


def export_dtype(requested: str | None, path: str | None, train_dtype: torch.dtype) -> torch.dtype:
    """The dtype of exported weights: ``auto`` keeps the base checkpoint's dtype.

    A model trained with fp32 master weights (mixed precision) from a bf16 checkpoint is
    exported in bf16, as it was published; a config-built model keeps its training dtype.
    """
    if requested and requested != "auto":
        return DTYPES[requested]
    if path:
        cfg_file = Path(path) / "config.json"
        if cfg_file.is_file():
            cfg = json.loads(cfg_file.read_text())
            name = cfg.get("dtype") or cfg.get("torch_dtype")
            if isinstance(name, str) and name in DTYPES:
                return DTYPES[name]
    return train_dtype


def rebuild_model(
    hparams: dict[str, Any], state: dict[str, torch.Tensor], dtype: torch.dtype = torch.float32
) -> torch.nn.Module:
    """Build the trained architecture on the CPU and load ``state`` (inner-model keys).

    The base comes from ``hparams['path']`` (or ``seed`` for a config-built model); every
    tensor of ``state`` that fits is loaded over it. A quantized (QLoRA) base is rebuilt in
    ``dtype`` and only the adapters are taken from ``state``.

    Raises:
        ValueError: When trained weights are missing from ``state``.
    """
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(
        hparams.get("tokenizer_path") or hparams["path"], trust_remote_code=False
    )
    name = next(k for k, v in DTYPES.items() if v == dtype)
    model = build_causal_lm(
        hparams.get("path"),
        len(tok),
        # Checkpoints written before the rename call it tiny_config.
        hparams.get("from_config", hparams.get("tiny_config")),
        name,
        None,
        hparams.get("seed", 0),
    )
    if hparams.get("embed_tie"):
        # the checkpoint holds the parametrization's tensors: load them into the same one
        apply_embed_tie(model, tok, hparams.get("seed", 0), hparams["embed_tie"])
    lora = LoraSettings.from_config(hparams.get("lora"))
    if lora.enabled:
        model = apply_lora(model, lora)
    own = model.state_dict()
    quantized = bool(hparams.get("quantization"))
    loadable, skipped = {}, []
    for k, v in state.items():
        if k in own and own[k].shape == v.shape and not (quantized and "lora_" not in k):
            loadable[k] = v.to(own[k].dtype)
        else:
            skipped.append(k)
    trainable = {k for k, _ in model.named_parameters() if "lora_" in k} if lora.enabled else set()
    missing = sorted(trainable - set(loadable))
    if missing or not loadable:
        raise ValueError(f"checkpoint lacks trained weights: {missing[:5] or 'all'}")
    model.load_state_dict(loadable, strict=False)
    if skipped and not quantized:
        log.warning(
            "export: %d checkpoint tensors did not match the model: %s", len(skipped), skipped[:5]
        )
    return model


def gather_full_state_dict(trainer: Any, module: torch.nn.Module) -> dict[str, torch.Tensor] | None:
    """The module's full state dict on global rank 0 (``None`` elsewhere).

    A collective under ZeRO-3 and FSDP (their parameters are sharded): call it on every rank.
    """
    strategy = trainer.strategy
    if getattr(strategy, "zero_stage_3", False):
        state = strategy.deepspeed_engine._zero3_consolidated_16bit_state_dict()
    elif strategy_kind(strategy) == "fsdp":
        state = strategy.lightning_module_state_dict()
    else:
        state = module.state_dict() if trainer.is_global_zero else None
    if not trainer.is_global_zero or state is None:
        return None
    return {k: v.detach().to("cpu") for k, v in state.items()}


def export_trained(
    trainer: Any,
    module: Any,
    tokenizer: Any,
    out_dir: str | Path,
    adapter_dir: str | Path | None = None,
    dtype: str | None = "auto",
    render: dict[str, Any] | None = None,
) -> Path | None:
    """End-of-training export from the live module (every rank calls; rank 0 writes)."""
    hp = dict(module.hparams)
    lora = LoraSettings.from_config(hp.get("lora"))
    sharded = getattr(trainer.strategy, "zero_stage_3", False) or (
        strategy_kind(trainer.strategy) == "fsdp"
    )
    train_dtype = next(p.dtype for p in module.model.parameters() if p.is_floating_point())
    # a model.embed_tie is merged on a rebuilt copy: merged in place, the module the run
    # hands back would no longer be the one its checkpoints hold
    if not sharded and not lora.enabled and not hp.get("embed_tie"):
        # The common case: the full model is on this rank already.
        if not trainer.is_global_zero:
            return None
        out_dtype = export_dtype(dtype, hp.get("path"), train_dtype)
        return export_hf(
            module.model,
            tokenizer,
            out_dir,
            None,
            out_dtype if out_dtype != train_dtype else None,
            render,
        )
    state = gather_full_state_dict(trainer, module)
    if state is None:
        return None
    out_dtype = export_dtype(dtype, hp.get("path"), train_dtype)
    model = rebuild_model(hp, inner_state_dict(state), out_dtype)
    return export_hf(
        model, tokenizer, out_dir, adapter_dir if lora.enabled else None, out_dtype, render
    )


def load_checkpoint_state(ckpt: str | Path) -> dict[str, torch.Tensor]:
    """Inner-model weights of a checkpoint: a Lightning file or a DeepSpeed folder.

    A file is read with ``torch.load(weights_only=True)`` (tensors and plain containers,
    never code). A DeepSpeed folder is consolidated by DeepSpeed, whose loader unpickles
    with ``weights_only=False``: export only folders you wrote.
    """
    ckpt = Path(ckpt)
    if ckpt.is_dir():
        from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

        tag = (ckpt / "latest").read_text().strip() if (ckpt / "latest").is_file() else None
        state = get_fp32_state_dict_from_zero_checkpoint(str(ckpt), tag=tag)
    else:
        from xlam.utils.checkpoint import load_checkpoint_file

        state = load_checkpoint_file(ckpt)["state_dict"]
    return inner_state_dict(state)


def export_checkpoint(
    run_dir: str | Path,
    ckpt: str = "last",
    out_dir: str | Path | None = None,
    adapter_dir: str | Path | None = None,
    dtype: str = "auto",
) -> dict[str, Path]:
    """Export a run's checkpoint (``last`` or a path) using the run's ``config.yaml``.

    Returns:
        ``{"model": merged folder, "adapter": PEFT folder (LoRA runs only)}``.
    """
    from omegaconf import OmegaConf
    from transformers import AutoTokenizer

    from xlam.utils.checkpoint import resolve_ckpt_path

    run_dir = Path(run_dir)
    cfg_file = run_dir / "config.yaml"
    if not cfg_file.is_file():
        raise FileNotFoundError(f"{cfg_file} not found: is {run_dir} an xlam run directory?")
    cfg = OmegaConf.to_container(OmegaConf.load(cfg_file), resolve=True)
    hp = {k: v for k, v in cfg["model"].items() if k != "_target_"}
    path = resolve_ckpt_path(ckpt, run_dir / "checkpoints")
    if path is None:
        raise FileNotFoundError(f"no checkpoint in {run_dir / 'checkpoints'}")
    state = load_checkpoint_state(path)
    lora = LoraSettings.from_config(hp.get("lora"))
    train_dtype = DTYPES.get(hp.get("dtype") or "float32", torch.float32)
    out_dtype = export_dtype(dtype, hp.get("path"), train_dtype)
    model = rebuild_model(hp, state, out_dtype)
    tok = AutoTokenizer.from_pretrained(
        hp.get("tokenizer_path") or hp["path"], trust_remote_code=False
    )
    out = Path(out_dir) if out_dir else run_dir / "export"
    adapter = Path(adapter_dir) if adapter_dir else run_dir / "adapter"
    render = (cfg.get("data") or {}).get("render")
    export_hf(model, tok, out, adapter if lora.enabled else None, out_dtype, render)
    result = {"model": out}
    if lora.enabled:
        result["adapter"] = adapter
    log.info("exported %s -> %s", path, result)
    return result


def main(argv: list[str] | None = None) -> None:
    """``xlam-export RUN_DIR``: merge LoRA and write an HF folder from a run's checkpoint."""
    parser = argparse.ArgumentParser(
        prog="xlam-export",
        description="Export a training run's checkpoint as a Hugging Face model folder "
        "(LoRA merged; the adapter alone in PEFT format; ZeRO shards consolidated).",
    )
    parser.add_argument("run_dir", help="run directory written by xlam-train")
    parser.add_argument("--ckpt", default="last", help="'last' or a checkpoint path")
    parser.add_argument("--out", default=None, help="model folder (default RUN_DIR/export)")
    parser.add_argument(
        "--adapter-out", default=None, help="adapter folder for LoRA runs (default RUN_DIR/adapter)"
    )
    parser.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", *sorted(DTYPES)],
        help="weights dtype (auto: the base checkpoint's)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    result = export_checkpoint(args.run_dir, args.ckpt, args.out, args.adapter_out, args.dtype)
    print(json.dumps({k: str(v) for k, v in result.items()}))


if __name__ == "__main__":
    main()

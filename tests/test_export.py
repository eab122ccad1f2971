"""Export: end of training and ``xlam-export RUN_DIR`` give the same HF folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import XLAM_EXPORT, run_cli, train_small

from xlam.models.export import export_checkpoint, export_dtype, inner_state_dict
from xlam.utils.hydra import compose_config

# The families in ../shared/fixtures/tokenizers (its SOURCES.md says where each comes from).
REAL_TOKENIZERS = ("deepseek_v3", "gpt_oss", "llama3", "llama3_1", "qwen2_5", "qwen3")


@pytest.fixture(scope="module")
def full_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export")
    train_small(out / "run", "trainer.max_steps=2")
    return out / "run"


def _logits(folder: Path) -> torch.Tensor:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder)
    with torch.no_grad():
        return model(torch.tensor([[3, 17, 42, 7, 99, 5]])).logits


def test_cli_export_matches_end_of_training(full_run: Path, tmp_path: Path) -> None:
    from transformers import AutoTokenizer, GenerationConfig

    out = tmp_path / "hf"
    proc = run_cli([str(full_run), "--out", str(out)], tmp_path, exe=XLAM_EXPORT, timeout=300)
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"model": str(out)}
    assert (out / "model.safetensors").is_file() and (out / "config.json").is_file()
    assert torch.allclose(_logits(out), _logits(full_run / "export"), atol=1e-6)
    tok = AutoTokenizer.from_pretrained(out)
    assert tok.chat_template  # vLLM and transformers render prompts with it
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert "hi" in prompt
    assert GenerationConfig.from_pretrained(out).eos_token_id == tok.eos_token_id


def test_export_dtype_and_errors(full_run: Path, tmp_path: Path) -> None:
    from safetensors import safe_open

    result = export_checkpoint(full_run, "last", tmp_path / "bf16", dtype="bfloat16")
    with safe_open(result["model"] / "model.safetensors", "pt") as f:
        dtypes = {f.get_tensor(k).dtype for k in f.keys()}  # noqa: SIM118 (not a dict)
    assert dtypes == {torch.bfloat16}
    ckpt = next((full_run / "checkpoints").glob("last.ckpt"))
    assert export_checkpoint(full_run, str(ckpt), tmp_path / "p")["model"].is_dir()
    with pytest.raises(FileNotFoundError, match=r"config\.yaml"):
        export_checkpoint(tmp_path, "last")


def test_export_helpers(tmp_path: Path) -> None:
    state = {"_forward_module.model.lm_head.weight": 1, "model.a": 2, "other": 3}
    assert inner_state_dict(state) == {"lm_head.weight": 1, "a": 2}
    (tmp_path / "config.json").write_text(json.dumps({"torch_dtype": "bfloat16"}))
    # A model trained in fp32 master weights from a bf16 checkpoint ships in bf16.
    assert export_dtype("auto", str(tmp_path), torch.float32) == torch.bfloat16
    assert export_dtype("auto", None, torch.float32) == torch.float32
    assert export_dtype("float16", None, torch.float32) == torch.float16


def test_tokenizer_that_would_not_come_back_is_refused(tmp_path: Path) -> None:
    # A byte-level BPE without Qwen2's split pattern, saved beside a qwen2 model, loads back
    # as Qwen2Tokenizer (transformers picks the class from model_type) and splits digits
    # differently: training must refuse it rather than export a model served on other tokens.
    from tokenizers import pre_tokenizers
    from transformers import AutoConfig, AutoTokenizer

    from xlam import TINY_TOKENIZER_DIR
    from xlam.models.export import check_tokenizer_matches

    qwen2 = AutoConfig.for_model("qwen2")
    tiny = AutoTokenizer.from_pretrained(TINY_TOKENIZER_DIR)
    check_tokenizer_matches(
        tiny, AutoTokenizer.from_pretrained(TINY_TOKENIZER_DIR, config=qwen2), "x"
    )
    tiny.backend_tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tiny.save_pretrained(tmp_path / "plain")
    plain = AutoTokenizer.from_pretrained(tmp_path / "plain")
    with pytest.raises(ValueError, match=r"loads as Qwen2Tokenizer.*tokenizes"):
        check_tokenizer_matches(
            plain, AutoTokenizer.from_pretrained(tmp_path / "plain", config=qwen2), "a qwen2 folder"
        )
    cfg = compose_config([f"model.tokenizer_path={tmp_path / 'plain'}"], output_dir=tmp_path / "r")
    module = __import__("hydra").utils.instantiate(cfg.model)
    with pytest.raises(ValueError, match="Qwen2Tokenizer"):
        module.configure_model()


def test_real_tokenizers_come_back_from_an_export(shared_fixtures: Path, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    from xlam.models.export import check_tokenizer_matches

    root = shared_fixtures / "tokenizers"
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    # A family that went missing fails instead of leaving the loop with nothing to check.
    missing = set(REAL_TOKENIZERS) - {p.name for p in folders}
    assert not missing, f"tokenizers missing from {root}: {sorted(missing)}"
    for folder in folders:
        tok = AutoTokenizer.from_pretrained(folder)
        tok.save_pretrained(tmp_path / folder.name)
        check_tokenizer_matches(
            tok, AutoTokenizer.from_pretrained(tmp_path / folder.name), folder.name
        )

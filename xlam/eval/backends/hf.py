"""A backend that generates with transformers: batched greedy decoding, CPU or CUDA.

Prompts are the exact training prompts (:class:`~xlam.eval.prompt.PromptBuilder`),
tokenized without added special tokens (the template wrote them) and padded on the left so
that every row continues from its last prompt token: batched greedy equals unbatched.
"""

from __future__ import annotations

from typing import Any

from xlam.eval.core import Backend, Completion, Request
from xlam.eval.prompt import PromptBuilder


def resolve_device(device: str) -> str:
    """``auto`` is ``cuda`` when a GPU is visible, else ``cpu``."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def render_prompt(prompts: PromptBuilder, request: Request) -> str:
    """The training prompt of ``request``; a failure names the request."""
    try:
        return prompts.prompt(request.messages, request.tools)
    except Exception as e:
        raise ValueError(f"request {request.id!r}: cannot render its prompt: {e}") from e


class HFBackend(Backend):
    """Greedy generation with ``model.generate`` on an HF folder (a training export).

    Args:
        model_dir: The HF folder (weights, config, tokenizer with its chat template).
        prompts: Renders the training prompt; ``None``: the folder's tokenizer with default
            render options.
        batch_size: Prompts per ``generate`` call (sorted by length to pad little).
        max_new_tokens: Generation limit per request.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:1``...
        dtype: ``auto`` (float32 on the CPU, the checkpoint's dtype on a GPU), ``float32``,
            ``bfloat16``, ``float16``.
    """

    name = "hf"

    def __init__(
        self,
        model_dir: str,
        prompts: PromptBuilder | None = None,
        batch_size: int = 8,
        max_new_tokens: int = 256,
        device: str = "auto",
        dtype: str = "auto",
        **_: Any,
    ) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from xlam.models.components.build import DTYPES, LOAD_KWARGS

        if batch_size < 1 or max_new_tokens < 1:
            raise ValueError(
                f"need batch_size >= 1 and max_new_tokens >= 1, got {batch_size}, {max_new_tokens}"
            )
        self.model_dir = str(model_dir)
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self.device = resolve_device(device)
        if dtype == "auto":
            # bf16/fp16 matmuls on a CPU are slow and not what a CPU test should compare.
            torch_dtype: Any = torch.float32 if self.device == "cpu" else "auto"
        elif dtype in DTYPES:
            torch_dtype = DTYPES[dtype]
        else:
            raise ValueError(f"backend.dtype must be auto or one of {', '.join(DTYPES)}: {dtype!r}")
        self.tokenizer = AutoTokenizer.from_pretrained(
            self.model_dir, local_files_only=True, trust_remote_code=False
        )
        self.prompts = prompts or PromptBuilder(self.tokenizer)
        model = AutoModelForCausalLM.from_pretrained(
            self.model_dir, dtype=torch_dtype, **LOAD_KWARGS
        )
        self.model = model.to(self.device).eval()
        self.dtype = str(next(self.model.parameters()).dtype).removeprefix("torch.")
        self.eos_ids = self._eos_ids()
        if not self.eos_ids:
            raise ValueError(
                f"{self.model_dir}: neither the tokenizer nor generation_config.json names an "
                "EOS token: generation would never stop before max_new_tokens"
            )
        pad = self.tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else self.eos_ids[0]

    @classmethod
    def from_model(
        cls,
        model: Any,
        tokenizer: Any,
        prompts: PromptBuilder | None = None,
        batch_size: int = 8,
        max_new_tokens: int = 256,
    ) -> HFBackend:
        """A backend over a model already in memory (the live model during training).

        The model is used as it is (device, dtype, mode): the caller puts it in eval mode.
        """
        self = cls.__new__(cls)
        self.model_dir = str(getattr(model, "name_or_path", "") or "<in memory>")
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self.tokenizer = tokenizer
        self.prompts = prompts or PromptBuilder(tokenizer)
        self.model = model
        param = next(model.parameters())
        self.device = str(param.device)
        self.dtype = str(param.dtype).removeprefix("torch.")
        self.eos_ids = self._eos_ids()
        if not self.eos_ids:
            raise ValueError("the tokenizer names no EOS token: generation would never stop")
        pad = tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else self.eos_ids[0]
        return self

    def _eos_ids(self) -> list[int]:
        """The tokenizer's EOS and every EOS id of the generation config (end of turn, call)."""
        ids: list[int] = []
        gen = getattr(self.model, "generation_config", None)
        for src in (getattr(gen, "eos_token_id", None), self.tokenizer.eos_token_id):
            for i in src if isinstance(src, list | tuple) else [src]:
                if i is not None and i not in ids:
                    ids.append(int(i))
        return ids

    def describe(self) -> dict[str, Any]:
        import transformers

        return {
            "name": self.name,
            "model_dir": self.model_dir,
            "device": self.device,
            "dtype": self.dtype,
            "batch_size": self.batch_size,
            "max_new_tokens": self.max_new_tokens,
            "eos_token_ids": self.eos_ids,
            "tool_format": self.prompts.tool_format,
            "transformers": transformers.__version__,
        }

    def generate(self, requests: list[Request]) -> list[Completion]:
        texts = [render_prompt(self.prompts, r) for r in requests]
        ids = self.tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
        out: list[Completion | None] = [None] * len(requests)
        # Longest first, so a batch holds prompts of similar length (and an out-of-memory
        # error comes at the first batch, not after an hour).
        order = sorted(range(len(requests)), key=lambda i: -len(ids[i]))
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            for i, (text, n) in zip(chunk, self._generate([ids[i] for i in chunk]), strict=True):
                out[i] = Completion(text=text, prompt=texts[i], num_tokens=n)
        return [c for c in out if c is not None]

    def _generate(self, batch: list[list[int]]) -> list[tuple[str, int]]:
        """Greedy continuations of token-id prompts: ``(text, generated tokens)`` each."""
        import torch
        from transformers import GenerationConfig

        width = max(len(x) for x in batch)
        input_ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        for row, x in enumerate(batch):
            # Left padding: the next token of every row is predicted at the last position.
            input_ids[row, width - len(x) :] = torch.tensor(x, dtype=torch.long)
            attention[row, width - len(x) :] = 1
        config = GenerationConfig(
            max_new_tokens=self.max_new_tokens,
            do_sample=False,
            num_beams=1,
            eos_token_id=self.eos_ids,
            pad_token_id=self.pad_id,
        )
        with torch.inference_mode():
            generated = self.model.generate(
                input_ids=input_ids.to(self.device),
                attention_mask=attention.to(self.device),
                generation_config=config,
            )
        results = []
        eos = set(self.eos_ids)
        for row in generated[:, width:].tolist():
            # Up to the first EOS (rows that stopped early are padded after it); the EOS
            # itself is not text, as a server leaves it out too.
            end = next((k for k, t in enumerate(row) if t in eos), None)
            tokens = row if end is None else row[:end]
            text = self.tokenizer.decode(tokens, skip_special_tokens=False)
            results.append((text, len(row) if end is None else end + 1))
        return results

    def close(self) -> None:
        import torch

        self.model = None  # type: ignore[assignment]
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


__all__ = ["HFBackend", "render_prompt", "resolve_device"]

"""Build the embedded tiny tokenizer (byte-level BPE) with a tool-aware chat template.

The tokenizer is trained with the ``tokenizers`` library on the project's own sample
trajectories and saved as a standard Hugging Face tokenizer folder, so
``AutoTokenizer.from_pretrained`` loads it offline. It pre-tokenizes exactly like Qwen2's
tokenizer (NFC, Qwen2's split pattern, byte level): the tiny model is a Qwen2, and
transformers and vLLM load the tokenizer of a ``qwen2`` model folder as ``Qwen2Tokenizer``,
which rebuilds that pipeline whatever ``tokenizer.json`` says. Any other pipeline would
tokenize an exported model's prompts differently from training. ``--split copy`` (for the
learnability bench) writes a value as the same tokens in a query and in a call; pair it with
a non-Qwen2 model type (``model.from_config.model_type=llama``), whose folder loads the
tokenizer as saved. ``--split words`` (the learnability bench's) is ``copy`` with a lower-case
word's leading space and a number's decimal point kept on it: a quoted text is one token a
word, the same in a query and in a call, but an unquoted lower-case word after a space is
another token than the same word after a quote.

Usage:
    python scripts/build_tiny_tokenizer.py [--out xlam/assets/tiny_tokenizer] [--vocab-size 2048]
        [--data DIR] [--tools json|signature] [--split qwen2|copy|words] [--digits 3]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast, Qwen2Tokenizer

ROOT = Path(__file__).resolve().parents[1]

# ChatML with Hermes-style tool calls: tools in the system turn, calls as JSON inside
# <tool_call> tags, tool results as their own turns. Every message renders the same
# whether or not it is last, so the template is prefix-stable.
CHAT_TEMPLATE = r"""
{%- set sys = messages[0].content if messages and messages[0].role == 'system' else '' -%}
{%- if tools -%}
<|im_start|>system
{% if sys %}{{ sys }}

{% endif %}# Tools
You may call one or more functions. Available functions:
<tools>
{% for tool in tools %}@TOOL@
{% endfor %}</tools>
For each call, return a JSON object with "name" and "arguments" inside <tool_call></tool_call> tags.<|im_end|>
{% elif sys -%}
<|im_start|>system
{{ sys }}<|im_end|>
{% endif -%}
{%- for m in messages -%}
{%- if m.role == 'user' -%}
<|im_start|>user
{{ m.content }}<|im_end|>
{% elif m.role == 'assistant' -%}
<|im_start|>assistant
{% if m.reasoning_content %}<think>
{{ m.reasoning_content }}
</think>
{% endif %}{{ m.content or '' }}
{%- for tc in m.tool_calls or [] -%}
{%- set f = tc.function if tc.function is defined else tc -%}
{% if loop.first and m.content %}
{% endif %}{% if not loop.first %}
{% endif %}<tool_call>
{"name": "{{ f.name }}", "arguments": {{ f.arguments | tojson if f.arguments is not string else f.arguments }}}
</tool_call>
{%- endfor %}<|im_end|>
{% elif m.role == 'tool' -%}
<|im_start|>tool
<tool_response>
{{ m.content }}
</tool_response><|im_end|>
{% endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
<|im_start|>assistant
{% endif -%}
""".strip()
TOOL_FORMATS = {
    # each tool's schema as JSON, as Hermes-style templates (Qwen2.5's) show it
    "json": "{{ tool | tojson }}",
    # a signature line, ~1/3 of the tokens: name(arg: type = default, ...): description
    "signature": (
        "{%- set f = tool.function if tool.function is defined else tool -%}"
        "{%- set ps = f.parameters or {} -%}{%- set req = ps.required or [] -%}"
        "{{ f.name }}("
        "{%- for k, v in (ps.properties or {}).items() -%}"
        "{{ k }}: {{ v.enum | tojson if v.enum is defined else v.type }}"
        "{%- if k not in req %}{% if v.default is defined %} = {{ v.default | tojson }}"
        "{% else %} = null{% endif %}{% endif -%}"
        "{%- if not loop.last %}, {% endif -%}"
        "{%- endfor -%}"
        "): {{ f.description }}"
    ),
}


def chat_template(tools: str = "json") -> str:
    """The chat template with tools shown as ``tools`` (a key of :data:`TOOL_FORMATS`)."""
    if tools not in TOOL_FORMATS:
        raise ValueError(f"tools must be one of {sorted(TOOL_FORMATS)}, got {tools!r}")
    return CHAT_TEMPLATE.replace("@TOOL@", TOOL_FORMATS[tools])


SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
ADDED = [
    "<tool_call>",
    "</tool_call>",
    "<tool_response>",
    "</tool_response>",
    "<think>",
    "</think>",
]


def corpus(data_dir: Path, template: str) -> list[str]:
    texts = []
    for path in sorted(data_dir.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            rec = json.loads(line)
            texts.append(rec["task_instruction"])
            texts.extend(json.dumps(t) for t in rec["tools"])
            for m in rec["conversation"]:
                texts.append(m["content"])
                for c in m.get("tool_calls", []):
                    texts.append(
                        json.dumps(
                            {"name": c["function"]["name"], "arguments": c["function"]["arguments"]}
                        )
                    )
    texts.append(template)
    return texts


# Pre-tokenization that keeps a value the same tokens wherever it is written: words without a
# leading space or quote (Qwen2's pattern glues them on: ` P-1` in a query but `P-1` after
# `"` in a call), a quote always alone, and numbers in chunks of up to three digits (as
# Llama 3's pattern), so a 5-digit id is two tokens, not five near-identical digits
# (``digits`` sets the chunk: fewer digits, fewer distinct number tokens to copy).
def copy_split(digits: int = 3, words: bool = False) -> str:
    """The ``copy`` pre-tokenization pattern, numbers in chunks of up to ``digits`` digits.

    ``words``: a lower-case word keeps one leading space and a chunk a decimal point before
    it (the ``words`` split).
    """
    if digits < 1:
        raise ValueError(f"digits must be >= 1, got {digits}")
    word, dot = (r" ?\p{Ll}+|", r"\.?") if words else ("", "")
    return rf'{word}\p{{L}}+|{dot}\p{{N}}{{1,{digits}}}|"|[^\s\p{{L}}\p{{N}}"]+|\s+'


# ``words``: with spaces as tokens of their own, a copy of a text of several words takes two
# steps a word (the space, then the word after the one before it) and ends on a space token
# like any other; with the space on the word, each step is a word and the end is the quote.
# Only lower-case words: ids, codes and names (`P-1`, `PST`, `Dakar`) stay one token after a
# space in a query and after `"` in a call. With the decimal point on its digits, a `.` alone
# ends a sentence and never a number's integer part. The cost: ` wishlist` in a query and
# `wishlist` after `"` in a call are two tokens.
SPLITS = ("qwen2", "copy", "words")


def build(
    out: Path,
    vocab_size: int,
    data_dir: Path,
    tools: str = "json",
    split: str = "qwen2",
    digits: int = 3,
) -> PreTrainedTokenizerFast:
    """Train the tokenizer on ``data_dir/*.jsonl`` and save it to ``out``.

    Args:
        out: The tokenizer folder to write.
        vocab_size: BPE vocabulary size (special and tool tokens included).
        data_dir: Unified trajectories the vocabulary is learnt from.
        tools: How the chat template shows tools (:data:`TOOL_FORMATS`).
        split: ``qwen2`` (Qwen2's pre-tokenization), ``copy`` (:func:`copy_split`, with
            every number of up to ``digits`` digits in the vocabulary) or ``words`` (``copy``
            with a lower-case word's leading space and a number's decimal point on it; every
            chunk with a point before it in the vocabulary too). A ``copy`` or ``words``
            tokenizer must not be paired with a ``qwen2`` model: transformers loads the
            tokenizer of a ``qwen2`` folder as ``Qwen2Tokenizer``, which restores Qwen2's
            pattern.
        digits: With ``copy`` or ``words``, numbers split into chunks of up to this many
            digits.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    template = chat_template(tools)
    tok = Tokenizer(models.BPE())
    qwen2 = Qwen2Tokenizer().backend_tokenizer  # its pipeline, with an empty vocabulary
    tok.normalizer = qwen2.normalizer
    tok.pre_tokenizer = qwen2.pre_tokenizer
    texts = corpus(data_dir, template)
    if split != "qwen2":
        pattern = copy_split(digits, words=split == "words")
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(pattern), "isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
        # every chunk a number can split into, frequent enough to be merged whole
        chunks = [f"{i:0{w}d}" for w in range(1, digits + 1) for i in range(10**w)]
        if split == "words":
            chunks += [f".{c}" for c in chunks]
        texts += [" ".join(chunks)] * 50
    tok.decoder = qwen2.decoder
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL + ADDED,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>"],
    )
    # Tool tags are ordinary added tokens: decode keeps them, so parsers can see them. Matched
    # on the raw text, as in Qwen2's tokenizer (the renderer's piecewise encoder relies on it).
    fast.add_tokens([AddedToken(t, normalized=False, special=False) for t in ADDED])
    fast.chat_template = template
    fast.model_max_length = 4096
    out.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(out)
    return fast


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=ROOT / "xlam/assets/tiny_tokenizer")
    p.add_argument("--data", type=Path, default=ROOT / "xlam/assets/data")
    p.add_argument("--vocab-size", type=int, default=2048)
    p.add_argument("--tools", choices=sorted(TOOL_FORMATS), default="json")
    p.add_argument("--split", choices=SPLITS, default="qwen2", help="pre-tokenization")
    p.add_argument(
        "--digits", type=int, default=3, help="copy/words split: digits per number chunk"
    )
    args = p.parse_args()
    fast = build(args.out, args.vocab_size, args.data, args.tools, args.split, args.digits)
    print(f"saved tokenizer with {len(fast)} tokens to {args.out}")


if __name__ == "__main__":
    main()

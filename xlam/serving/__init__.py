"""Serving: turn model outputs back into OpenAI tool calls.

``parser.parse_tool_calls`` reads every call syntax our models are trained to emit;
``vllm_plugin`` wraps it as a vLLM ``--tool-parser-plugin`` (imported only by vLLM, since
loading it registers the parser).
"""

from xlam.serving.parser import ParsedCall, ParseResult, parse_tool_calls

__all__ = ["ParseResult", "ParsedCall", "parse_tool_calls"]

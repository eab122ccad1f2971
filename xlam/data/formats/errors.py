"""The mapping rules an importer can break and :class:`RecordError`, which names one.

Kept apart from :mod:`.base` so that the tool-schema converter, which ``base`` uses, can
raise it without importing ``base`` back.
"""

from __future__ import annotations

from xlam.data.schema import SchemaError

# Mapping rules an importer can break (name -> what it means). The docs list them too.
IMPORT_RULES: dict[str, str] = {
    "invalid_utf8": "the line is not valid UTF-8",
    "invalid_json": "the line or element is not valid JSON",
    "record_type": "the record is not a JSON object",
    "missing_field": "a field the format requires is absent",
    "field_type": "a field has the wrong type",
    "tools_json": "the tools field is a string but not valid JSON",
    "tool_schema": "a declared tool cannot be read as a function schema",
    "unknown_role": "a turn has a role the format does not define",
    "content_type": "message content is neither text nor text parts",
    "system_position": "a system message appears after the conversation started",
    "call_parse": "a tool call cannot be parsed",
    "arguments_json": "call arguments are a string but not valid JSON",
    "arguments_type": "call arguments are not a JSON object",
    "empty": "the record holds no conversation",
    "schema": "the result breaks the unified trajectory schema",
    "too_deep": "the record is nested too deeply to process",
    "internal_error": "an importer bug (please report it with the record)",
}


class RecordError(SchemaError):
    """A native record cannot be mapped to a trajectory.

    Attributes:
        rule: Name of the broken mapping rule (a key of :data:`IMPORT_RULES`).
        message: Human-readable explanation, without location (the loop adds it).
    """

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(f"{rule}: {message}")
        self.rule = rule
        self.message = message

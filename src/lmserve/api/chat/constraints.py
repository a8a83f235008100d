"""Which grammar a chat request's output must follow: a forced tool call, or a JSON
schema, or none."""

from __future__ import annotations

from typing import Any

from lmserve.api.chat.spec import ChatSpec
from lmserve.api.schema_grammar import schema_grammar
from lmserve.api.schema_grammar import tool_call_grammar as _call_grammar

_MARKERS = {
    "hermes": ('"<tool_call>\\n"', '"\\n</tool_call>"'),
    "mistral": ('"[TOOL_CALLS]["', '"]"'),
}


def tool_call_grammar(family: str, functions: list[dict[str, Any]]) -> str:
    """A grammar that admits exactly one well-formed call in the family's format."""
    args_key = "parameters" if family == "llama3" else "arguments"
    return _call_grammar(functions, args_key, _MARKERS.get(family, ("", "")))


def output_grammar(spec: ChatSpec, functions: list[dict[str, Any]], forced: str | None,
                   family: str) -> str | None:
    if functions and (forced or spec.tool_choice == "required"):
        chosen = [fn for fn in functions if fn["name"] == forced] if forced else functions
        return tool_call_grammar(family, chosen)
    if spec.json_schema is not None:
        return schema_grammar(spec.json_schema or {"type": "object"})
    return None

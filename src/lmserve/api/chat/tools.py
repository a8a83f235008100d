"""The tools a chat request lets the model call, checked before anything runs."""

from __future__ import annotations

import json
from typing import Any

from lmserve.api.chat.spec import ChatSpec
from lmserve.api.errors import APIError


def tool_functions(spec: ChatSpec) -> list[dict[str, Any]]:
    """The callable functions: [] when tool_choice is none."""
    if spec.tool_choice == "none":
        return []
    functions = []
    for i, tool in enumerate(spec.tools):
        fn = tool.get("function") if tool.get("type") == "function" else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
            raise APIError(400, "Each tool must be {'type': 'function', 'function': "
                                "{'name': ..., 'parameters': {...}}}.", param=f"tools[{i}]")
        functions.append(fn)
    return functions


def forced_function(spec: ChatSpec, functions: list[dict[str, Any]]) -> str | None:
    """The function name tool_choice forces, if it names one."""
    if spec.tool_choice == "required" and not functions:
        raise APIError(400, "tool_choice is 'required' but no tools were given.",
                       param="tool_choice")
    choice = spec.tool_choice
    if not functions or not isinstance(choice, dict):
        return None
    name = (choice.get("function") or {}).get("name") or choice.get("name")
    if name not in [fn["name"] for fn in functions]:
        raise APIError(400, f"tool_choice names '{name}', which is not among the tools.",
                       param="tool_choice")
    return name


def tools_system_prompt(functions: list[dict[str, Any]]) -> str:
    """For templates that know nothing of tools: describe them in a system message."""
    listing = "\n".join(json.dumps(fn, ensure_ascii=False) for fn in functions)
    return (
        "You can call these functions:\n" + listing + "\n\n"
        "To call a function, reply with only a JSON object of the form "
        '{"name": <function name>, "arguments": <arguments object>} and nothing else. '
        "Otherwise, answer normally."
    )

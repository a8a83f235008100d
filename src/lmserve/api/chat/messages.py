"""A conversation rendered with the model's chat template."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from lmserve.api.chat.spec import ChatSpec
from lmserve.api.chat.tools import tool_functions, tools_system_prompt
from lmserve.models import Model
from lmserve.parsers import family_for_template


def template_messages(messages: list[dict[str, Any]], native_tools: bool
                      ) -> list[dict[str, Any]]:
    """Messages in the shape Jinja chat templates expect.

    Templates that render tools get tool calls with parsed arguments; for the others,
    calls become the JSON the model was asked to write and results become user turns.
    """
    out = []
    for m in messages:
        m = dict(m)
        if m["role"] == "developer":
            m["role"] = "system"
        calls = m.pop("tool_calls", None) or []
        if native_tools:
            if calls:
                m["tool_calls"] = [{**c, "function": {**c["function"], "arguments":
                                    _as_object(c["function"].get("arguments"))}}
                                   for c in calls]
        else:
            if calls:
                text = "\n".join(json.dumps({"name": c["function"]["name"], "arguments":
                                             _as_object(c["function"].get("arguments"))})
                                 for c in calls)
                m["content"] = ((m.get("content") or "") + "\n" + text).strip()
            if m["role"] == "tool":
                m = {"role": "user", "content": f"Function result: {m.get('content', '')}"}
        out.append(m)
    return out


def _as_object(arguments: Any) -> Any:
    if isinstance(arguments, str):
        try:
            return json.loads(arguments)
        except ValueError:
            return arguments
    return arguments


@dataclass
class ChatPrompt:
    """A chat request rendered for one model: what is submitted and how to read it."""

    text: str
    tokens: list[int]
    functions: list[dict[str, Any]]  # the callable tools ([] when tool_choice is none)
    family: str  # the tool-call format the output is parsed (and constrained) as


def render_prompt(model: Model, spec: ChatSpec) -> ChatPrompt:
    """The prompt for this request: tools rendered by the template when it knows them,
    else described in a system message."""
    template = model.template.source
    functions = tool_functions(spec)
    native_tools = bool(functions) and "tools" in template
    messages = template_messages(spec.messages, native_tools)
    if functions and not native_tools:
        messages = [{"role": "system", "content": tools_system_prompt(functions)}, *messages]
    text = model.template.render(messages, tools=spec.tools if native_tools else None,
                                 variables=spec.template_variables)
    family = family_for_template(template) if native_tools else "generic"
    return ChatPrompt(text, model.tokenize_rendered(text), functions, family)

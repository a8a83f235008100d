"""Reasoning controls as chat-template variables: `enable_thinking` (read by Qwen3's,
DeepSeek's and other reasoning templates) and `reasoning_effort` (read by gpt-oss's).
A template that reads neither ignores them."""

from __future__ import annotations

from typing import Any

# OpenAI's efforts, LM Studio's `reasoning` values and what each sets.
_VARIABLES: dict[str, dict[str, Any]] = {
    "none": {"enable_thinking": False},
    "off": {"enable_thinking": False},
    "on": {"enable_thinking": True},
    "minimal": {"enable_thinking": True, "reasoning_effort": "low"},
    "low": {"enable_thinking": True, "reasoning_effort": "low"},
    "medium": {"enable_thinking": True, "reasoning_effort": "medium"},
    "high": {"enable_thinking": True, "reasoning_effort": "high"},
}


def reasoning_variables(effort: str | None) -> dict[str, Any]:
    """The template variables for an effort; none when the request names none."""
    return dict(_VARIABLES[effort]) if effort is not None else {}

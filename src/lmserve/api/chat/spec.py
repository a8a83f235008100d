"""What a chat request asks for, whichever API family it came through."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lmserve.engine import SamplingParams


@dataclass
class ChatSpec:
    messages: list[dict[str, Any]]  # OpenAI-style: role, content (str), tool_calls, ...
    sampling: SamplingParams
    max_tokens: int | None = None
    stop: list[str] = field(default_factory=list)
    tools: list[dict[str, Any]] = field(default_factory=list)  # {"type": "function", ...}
    tool_choice: str | dict[str, Any] = "auto"  # none | auto | required | named function
    parallel_tool_calls: bool = True
    json_schema: dict[str, Any] | None = None  # structured output; {} = any JSON object
    logprobs: int | None = None  # None: off; N: top-N alternatives per token
    n: int = 1
    # Streamed replies send tool-call arguments as they are generated; whole replies
    # check each call whole first, so that a malformed one stays in the content.
    stream: bool = False
    # Extra chat-template variables: reasoning controls, `chat_template_kwargs`.
    template_variables: dict[str, Any] = field(default_factory=dict)
    report_progress: bool = False  # PromptProgress events while the prompt is read

"""Wire schemas of Anthropic's Messages API, and their translation to a ChatSpec.

Only text, tool use and tool results are understood; other block types (images,
documents) are refused with a 400 rather than silently dropped.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from lmserve.api.chat.reasoning import reasoning_variables
from lmserve.api.chat.spec import ChatSpec
from lmserve.engine import SamplingParams


class _Open(BaseModel):
    # Clients send fields we do not use (metadata, cache_control, citations...).
    model_config = ConfigDict(extra="allow", strict=True)


class TextBlock(_Open):
    type: Literal["text"]
    text: str


class ToolUseBlock(_Open):
    type: Literal["tool_use"]
    id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    input: dict[str, Any]


class ToolResultBlock(_Open):
    type: Literal["tool_result"]
    tool_use_id: str = Field(min_length=1)
    content: str | list[TextBlock] | None = None
    is_error: bool = False

    def text(self) -> str:
        if isinstance(self.content, list):
            return "\n".join(block.text for block in self.content)
        return self.content or ""


class ThinkingBlock(_Open):
    """Earlier reasoning sent back by the client; it is not rendered into the prompt."""

    type: Literal["thinking"]


class RedactedThinkingBlock(_Open):
    """The same, encrypted; a model of its own so each block type names one model."""

    type: Literal["redacted_thinking"]


ContentBlock = Annotated[TextBlock | ToolUseBlock | ToolResultBlock | ThinkingBlock
                         | RedactedThinkingBlock, Field(discriminator="type")]


class Message(_Open):
    role: Literal["user", "assistant"]
    content: str | list[ContentBlock]

    @model_validator(mode="after")
    def _blocks_fit_role(self) -> Message:
        misplaced = "tool_result" if self.role == "assistant" else "tool_use"
        if isinstance(self.content, list) and any(b.type == misplaced for b in self.content):
            raise ValueError(f"{self.role} messages cannot contain {misplaced} blocks")
        return self


class Tool(_Open):
    type: Literal["custom"] | None = None
    name: str = Field(min_length=1, max_length=128)
    description: str | None = None
    input_schema: dict[str, Any]


class ToolChoice(_Open):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool = False

    @model_validator(mode="after")
    def _tool_needs_name(self) -> ToolChoice:
        if self.type == "tool" and not self.name:
            raise ValueError("type 'tool' needs a 'name'")
        return self


class Thinking(_Open):
    """Extended thinking: on or off in templates that read `enable_thinking`; the budget
    is accepted and not enforced."""

    type: Literal["enabled", "disabled"]
    budget_tokens: int | None = Field(default=None, ge=1)


class CountTokensRequest(_Open):
    """What decides the prompt: shared by /v1/messages and its count_tokens route."""

    model: str = Field(min_length=1)
    messages: list[Message] = Field(min_length=1)
    system: str | list[TextBlock] | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    thinking: Thinking | None = None

    def chat_spec(self) -> ChatSpec:
        thinking = self.thinking and ("on" if self.thinking.type == "enabled" else "off")
        return ChatSpec(
            messages=self.chat_messages(),
            sampling=SamplingParams(),
            tools=[_function_tool(t) for t in self.tools or []],
            tool_choice=self._tool_choice(),
            parallel_tool_calls=not (self.tool_choice
                                     and self.tool_choice.disable_parallel_tool_use),
            template_variables=reasoning_variables(thinking),
        )

    def chat_messages(self) -> list[dict[str, Any]]:
        """The conversation as OpenAI-style messages, the shape ChatSpec takes."""
        out: list[dict[str, Any]] = []
        system = _system_text(self.system)
        if system:
            out.append({"role": "system", "content": system})
        tool_names: dict[str, str] = {}
        for message in self.messages:
            if message.role == "assistant":
                out.append(_assistant_message(message, tool_names))
            else:
                out.extend(_user_messages(message, tool_names))
        return out

    def _tool_choice(self) -> str | dict[str, Any]:
        choice = self.tool_choice
        if choice is None or choice.type == "auto":
            return "auto"
        if choice.type == "any":
            return "required"
        if choice.type == "none":
            return "none"
        return {"type": "function", "function": {"name": choice.name}}


class MessagesRequest(CountTokensRequest):
    max_tokens: int = Field(ge=1)
    stop_sequences: list[str] | None = None
    temperature: float | None = Field(default=None, ge=0.0, le=1.0)
    top_p: float | None = Field(default=None, ge=0.0, le=1.0)
    top_k: int | None = Field(default=None, ge=0)
    stream: bool = False

    def chat_spec(self) -> ChatSpec:
        spec = super().chat_spec()
        spec.sampling = self._sampling()
        spec.max_tokens = self.max_tokens
        spec.stop = [s for s in self.stop_sequences or [] if s]
        spec.stream = self.stream
        return spec

    def _sampling(self) -> SamplingParams:
        given = {"temperature": self.temperature, "top_p": self.top_p, "top_k": self.top_k}
        # Unset fields keep the server's defaults, as on the OpenAI routes.
        return SamplingParams(**{k: v for k, v in given.items() if v is not None})


def _system_text(system: str | list[TextBlock] | None) -> str:
    if isinstance(system, list):
        return "\n".join(block.text for block in system)
    return system or ""


def _function_tool(tool: Tool) -> dict[str, Any]:
    function: dict[str, Any] = {"name": tool.name, "parameters": tool.input_schema}
    if tool.description:
        function["description"] = tool.description
    return {"type": "function", "function": function}


def _assistant_message(message: Message, tool_names: dict[str, str]) -> dict[str, Any]:
    if isinstance(message.content, str):
        return {"role": "assistant", "content": message.content}
    texts = [b.text for b in message.content if isinstance(b, TextBlock)]
    calls = []
    for block in message.content:
        if isinstance(block, ToolUseBlock):
            tool_names[block.id] = block.name
            calls.append({"id": block.id, "type": "function", "function": {
                "name": block.name, "arguments": json.dumps(block.input, ensure_ascii=False)}})
    out: dict[str, Any] = {"role": "assistant", "content": "\n".join(texts)}
    if calls:
        out["tool_calls"] = calls
    return out


def _user_messages(message: Message, tool_names: dict[str, str]) -> list[dict[str, Any]]:
    """A user turn: its tool results become `tool` messages, its text a user message,
    in the order the blocks came."""
    if isinstance(message.content, str):
        return [{"role": "user", "content": message.content}]
    out: list[dict[str, Any]] = []
    texts: list[str] = []

    def flush_text() -> None:
        if texts:
            out.append({"role": "user", "content": "\n".join(texts)})
            texts.clear()

    for block in message.content:
        if isinstance(block, TextBlock):
            texts.append(block.text)
        elif isinstance(block, ToolResultBlock):
            flush_text()
            content = block.text()
            tool_message = {"role": "tool", "tool_call_id": block.tool_use_id,
                            "content": f"Error: {content}" if block.is_error else content}
            if block.tool_use_id in tool_names:
                tool_message["name"] = tool_names[block.tool_use_id]
            out.append(tool_message)
    flush_text()
    return out

"""Wire schemas of the Responses API (`POST /v1/responses`) and their translation to the
chat messages and ChatSpec the shared chat core runs."""

from __future__ import annotations

import secrets
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Discriminator, Field, Tag, TypeAdapter

from lmserve.api.chat.reasoning import reasoning_variables
from lmserve.api.chat.spec import ChatSpec
from lmserve.api.null_unset import NullMeansUnset
from lmserve.engine import SamplingParams

LOGPROBS_INCLUDE = "message.output_text.logprobs"


def new_item_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(24)}"


class _Open(NullMeansUnset):
    # Clients send fields we do not use (ids, statuses, annotations...): accept them.
    model_config = ConfigDict(extra="allow", strict=True)


class TextPart(_Open):
    type: Literal["input_text", "output_text"]
    text: str


def _joined(content: str | list[TextPart]) -> str:
    return content if isinstance(content, str) else "".join(p.text for p in content)


class MessageItem(_Open):
    type: Literal["message"] = "message"
    role: Literal["user", "assistant", "system", "developer"]
    content: list[TextPart] | str


class FunctionCallItem(_Open):
    type: Literal["function_call"]
    call_id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    arguments: str


class FunctionCallOutputItem(_Open):
    type: Literal["function_call_output"]
    call_id: str = Field(min_length=1)
    output: list[TextPart] | str


class McpCallItem(_Open):
    """A call the server ran on an MCP server: the model's turn and the tool's result."""

    type: Literal["mcp_call"]
    id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    arguments: str
    output: str | None = None
    error: Any = None


class McpListToolsItem(_Open):
    """Accepted so clients can send a whole previous output back; not shown to the model."""

    type: Literal["mcp_list_tools"]


class ReasoningItem(_Open):
    """Accepted so clients can send a whole previous output back; not shown to the model."""

    type: Literal["reasoning"]


def _item_kind(item: Any) -> str | None:
    # A message may leave out its type; every other item names it.
    if isinstance(item, dict):
        return item.get("type", "message")
    return getattr(item, "type", None)


InputItem = Annotated[
    Annotated[MessageItem, Tag("message")]
    | Annotated[FunctionCallItem, Tag("function_call")]
    | Annotated[FunctionCallOutputItem, Tag("function_call_output")]
    | Annotated[ReasoningItem, Tag("reasoning")]
    | Annotated[McpCallItem, Tag("mcp_call")]
    | Annotated[McpListToolsItem, Tag("mcp_list_tools")],
    Discriminator(_item_kind),
]

_ITEMS = TypeAdapter(list[InputItem])


class FunctionTool(_Open):
    type: Literal["function"]
    name: str = Field(min_length=1, max_length=64)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None

    def chat_tool(self) -> dict[str, Any]:
        """The tool as Chat Completions sends it, so both APIs prompt the model alike."""
        function = {"name": self.name, "description": self.description,
                    "parameters": self.parameters, "strict": self.strict}
        return {"type": "function",
                "function": {k: v for k, v in function.items() if v is not None}}

    def echo(self) -> dict[str, Any]:
        return {"type": "function", "name": self.name, "description": self.description,
                "parameters": self.parameters, "strict": self.strict}


class McpToolParam(_Open):
    """A remote MCP server whose tools the server runs for the model."""

    type: Literal["mcp"]
    server_label: str = Field(min_length=1, max_length=64)
    server_url: str = Field(min_length=1)
    allowed_tools: list[str] | None = None
    headers: dict[str, str] | None = None
    require_approval: Literal["never", "always"] | dict[str, Any] | None = None
    server_description: str | None = None

    def echo(self) -> dict[str, Any]:
        # headers are often credentials: never echoed, so never stored either
        echoed = {"type": "mcp", "server_label": self.server_label,
                  "server_url": self.server_url, "allowed_tools": self.allowed_tools,
                  "headers": None, "require_approval": "never"}
        if self.server_description is not None:
            echoed["server_description"] = self.server_description
        return echoed


ToolParam = Annotated[FunctionTool | McpToolParam, Field(discriminator="type")]


class FunctionChoice(_Open):
    type: Literal["function"]
    name: str = Field(min_length=1)


def chat_tool_choice(choice: str | FunctionChoice | None) -> str | dict[str, Any]:
    """A Responses-style tool_choice as the chat core takes it (Chat Completions' form)."""
    if isinstance(choice, FunctionChoice):
        return {"type": "function", "function": {"name": choice.name}}
    return choice or "auto"


class FormatText(_Open):
    type: Literal["text"]


class FormatJSONObject(_Open):
    type: Literal["json_object"]


class FormatJSONSchema(_Open):
    model_config = ConfigDict(extra="allow", strict=True, populate_by_name=True)
    type: Literal["json_schema"]
    name: str = Field(min_length=1, max_length=64)
    schema_: dict[str, Any] = Field(alias="schema")
    description: str | None = None
    strict: bool | None = None


TextFormat = Annotated[FormatText | FormatJSONObject | FormatJSONSchema,
                       Field(discriminator="type")]


class TextParam(_Open):
    format: TextFormat = Field(default_factory=lambda: FormatText(type="text"))


class ReasoningParam(_Open):
    effort: Literal["none", "minimal", "low", "medium", "high"] | None = None
    summary: Literal["auto", "concise", "detailed"] | None = None


class ResponseRequest(_Open):
    model: str = Field(min_length=1)
    input: list[InputItem] | str  # the list first: its errors are the useful ones
    instructions: str | None = None
    max_output_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, ge=0.0, le=1.0)
    tools: list[ToolParam] | None = None
    tool_choice: Literal["none", "auto", "required"] | FunctionChoice | None = None
    parallel_tool_calls: bool | None = None
    text: TextParam | None = None
    previous_response_id: str | None = None
    store: bool | None = None
    stream: bool | None = None
    metadata: dict[str, str] | None = None
    include: list[str] | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    reasoning: ReasoningParam | None = None

    @property
    def stores(self) -> bool:
        return self.store is not False  # stored unless the client opts out

    @property
    def streams(self) -> bool:
        return bool(self.stream)

    @property
    def text_format(self) -> FormatText | FormatJSONObject | FormatJSONSchema:
        return (self.text or TextParam()).format

    @property
    def with_logprobs(self) -> bool:
        return LOGPROBS_INCLUDE in (self.include or [])

    @property
    def function_tools(self) -> list[FunctionTool]:
        return [t for t in self.tools or [] if isinstance(t, FunctionTool)]

    @property
    def mcp_tools(self) -> list[McpToolParam]:
        return [t for t in self.tools or [] if isinstance(t, McpToolParam)]

    def input_items(self) -> list[dict[str, Any]]:
        """The new input as plain items, the form they are stored in."""
        if isinstance(self.input, str):
            return [{"type": "message", "role": "user", "content": self.input}]
        return [item.model_dump(by_alias=True) for item in self.input]

    def chat_spec(self, messages: list[dict[str, Any]]) -> ChatSpec:
        given = {"temperature": self.temperature, "top_p": self.top_p}
        return ChatSpec(
            messages=messages,
            sampling=SamplingParams(**{k: v for k, v in given.items() if v is not None}),
            max_tokens=self.max_output_tokens,
            tools=[t.chat_tool() for t in self.function_tools],
            tool_choice=chat_tool_choice(self.tool_choice),
            parallel_tool_calls=self.parallel_tool_calls is not False,
            json_schema=self._json_schema(),
            logprobs=(self.top_logprobs or 0) if self.with_logprobs else None,
            stream=self.streams,
            template_variables=reasoning_variables(self.reasoning.effort if self.reasoning
                                                   else None),
        )

    def _json_schema(self) -> dict[str, Any] | None:
        fmt = self.text_format
        if isinstance(fmt, FormatJSONSchema):
            return fmt.schema_
        if isinstance(fmt, FormatJSONObject):
            return {}  # any JSON object
        return None

    # -- echoed back in the response object ---------------------------------------------

    def echo_tools(self) -> list[dict[str, Any]]:
        return [t.echo() for t in self.tools or []]

    def echo_tool_choice(self) -> str | dict[str, Any]:
        if isinstance(self.tool_choice, FunctionChoice):
            return {"type": "function", "name": self.tool_choice.name}
        return self.tool_choice or "auto"

    def echo_text(self) -> dict[str, Any]:
        fmt = self.text_format
        if isinstance(fmt, FormatJSONSchema):
            echoed = {"type": "json_schema", "name": fmt.name, "schema": fmt.schema_,
                      "strict": fmt.strict}
            if fmt.description is not None:
                echoed["description"] = fmt.description
            return {"format": echoed}
        return {"format": {"type": fmt.type}}


def conversation_messages(instructions: str | None, items: list[dict[str, Any]]
                          ) -> list[dict[str, Any]]:
    """Chat messages for the shared chat core from Responses items.

    Function calls join the assistant turn they follow; their outputs become tool
    messages, named after the call when it is known.
    """
    messages: list[dict[str, Any]] = []
    if instructions:
        messages.append({"role": "system", "content": instructions})
    names: dict[str, str] = {}
    for item in _ITEMS.validate_python(items):
        if isinstance(item, MessageItem):
            messages.append({"role": item.role, "content": _joined(item.content)})
        elif isinstance(item, FunctionCallItem):
            names[item.call_id] = item.name
            _append_call(messages, {"id": item.call_id, "type": "function", "function": {
                "name": item.name, "arguments": item.arguments}})
        elif isinstance(item, FunctionCallOutputItem):
            message = {"role": "tool", "tool_call_id": item.call_id,
                       "content": _joined(item.output)}
            if item.call_id in names:
                message["name"] = names[item.call_id]
            messages.append(message)
        elif isinstance(item, McpCallItem):
            _append_call(messages, {"id": item.id, "type": "function", "function": {
                "name": item.name, "arguments": item.arguments}})
            messages.append({"role": "tool", "tool_call_id": item.id, "name": item.name,
                             "content": item.output if item.output is not None
                             else f"Error: {item.error}"})
    return messages


def _append_call(messages: list[dict[str, Any]], call: dict[str, Any]) -> None:
    last = messages[-1] if messages else None
    if last is not None and last["role"] == "assistant":
        last.setdefault("tool_calls", []).append(call)
    else:
        messages.append({"role": "assistant", "content": "", "tool_calls": [call]})

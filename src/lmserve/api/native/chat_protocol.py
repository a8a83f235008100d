"""Wire schema of `POST /api/v1/chat`, LM Studio's native chat: what clients send."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field

from lmserve.api.chat.reasoning import reasoning_variables
from lmserve.api.chat.spec import ChatSpec
from lmserve.api.null_unset import NullMeansUnset
from lmserve.api.openai.responses_protocol import FunctionChoice, chat_tool_choice
from lmserve.engine import SamplingParams


class _Open(NullMeansUnset):
    model_config = ConfigDict(extra="allow", strict=True)


class InputMessage(_Open):
    type: Literal["message"]
    content: str


class PluginIntegration(_Open):
    """A server declared in mcp.json, as `mcp/<name>`."""

    type: Literal["plugin"]
    id: str = Field(pattern=r"^mcp/.+")
    allowed_tools: list[str] | None = None


class EphemeralMcpIntegration(_Open):
    """A remote MCP server named by the request itself."""

    type: Literal["ephemeral_mcp"]
    server_label: str = Field(min_length=1)
    server_url: str = Field(min_length=1)
    allowed_tools: list[str] | None = None
    headers: dict[str, str] | None = None


Integration = Annotated[PluginIntegration | EphemeralMcpIntegration,
                        Field(discriminator="type")]
# A plugin by its id alone: "mcp/<name>".
PluginId = Annotated[str, Field(pattern=r"^mcp/.+")]


class NativeChatRequest(_Open):
    model: str = Field(min_length=1)
    input: str | list[InputMessage]
    system_prompt: str | None = None
    stream: bool = False
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, ge=0.0, le=1.0)
    top_k: int | None = Field(default=None, ge=0)
    min_p: float | None = Field(default=None, ge=0.0, le=1.0)
    repeat_penalty: float | None = Field(default=None, gt=0.0)
    max_output_tokens: int | None = Field(default=None, ge=1)
    reasoning: Literal["off", "low", "medium", "high", "on"] | None = None
    context_length: int | None = Field(default=None, ge=64)
    store: bool = True
    previous_response_id: str | None = Field(default=None, pattern=r"^resp_")
    integrations: list[PluginId | Integration] | None = None
    # An lmserve extension, as on /v1/responses: which of the integrations' tools the
    # model must call first (small models rarely call one of their own accord).
    tool_choice: Literal["none", "auto", "required"] | FunctionChoice | None = None

    def input_items(self) -> list[dict[str, Any]]:
        """The new input as Responses message items, the form chats are stored in."""
        texts = [self.input] if isinstance(self.input, str) else [m.content for m in
                                                                  self.input]
        return [{"type": "message", "role": "user", "content": text} for text in texts]

    def chat_spec(self, messages: list[dict[str, Any]]) -> ChatSpec:
        given = {"temperature": self.temperature, "top_p": self.top_p, "top_k": self.top_k,
                 "min_p": self.min_p, "repeat_penalty": self.repeat_penalty}
        return ChatSpec(
            messages=messages,
            sampling=SamplingParams(**{k: v for k, v in given.items() if v is not None}),
            max_tokens=self.max_output_tokens,
            stream=self.stream,
            template_variables=reasoning_variables(self.reasoning),
            report_progress=True,
            tool_choice=chat_tool_choice(self.tool_choice),
        )

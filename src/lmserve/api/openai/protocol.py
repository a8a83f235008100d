"""Wire schemas of the OpenAI routes: what clients send (validated) and helpers for
what the server sends back."""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, ConfigDict, Field, field_validator, model_validator

from lmserve.api.chat.reasoning import reasoning_variables
from lmserve.api.chat.spec import ChatSpec
from lmserve.api.null_unset import NullMeansUnset
from lmserve.api.usage import TokenUsage
from lmserve.engine import SamplingParams
from lmserve.engine.request import TokenLogprob
from lmserve.models.chat_template import RESERVED_VARIABLES

# The functions API had no call ids: past calls get this one when rendered as tools.
LEGACY_CALL_ID = "call_function"


def _free_template_names(variables: dict[str, Any]) -> dict[str, Any]:
    taken = sorted(RESERVED_VARIABLES & variables.keys())
    if taken:
        raise ValueError(f"{', '.join(taken)} cannot be set here: the server sets "
                         f"{'it' if len(taken) == 1 else 'them'} from the request.")
    return variables


# Chat-template variables passed through (as vLLM and llama-server allow).
TemplateVariables = Annotated[dict[str, Any], AfterValidator(_free_template_names)]


class _Request(NullMeansUnset):
    # Clients send fields we do not use (user, metadata, service_tier...): accept them.
    # Types are strict, as in OpenAI's API and the OpenAPI document: `"stream": 0` or
    # `"max_tokens": "8"` is a 400, not silently read as false or 8.
    model_config = ConfigDict(extra="allow", strict=True)


class TextPart(NullMeansUnset):
    model_config = ConfigDict(extra="allow", strict=True)
    type: Literal["text"]
    text: str


class FunctionCall(NullMeansUnset):
    model_config = ConfigDict(extra="allow", strict=True)
    name: str
    arguments: str = "{}"


class ToolCallIn(NullMeansUnset):
    model_config = ConfigDict(extra="allow", strict=True)
    id: str | None = None
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(NullMeansUnset):
    model_config = ConfigDict(extra="allow", strict=True)
    # "function" and `function_call`: the deprecated functions API, read as tools.
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[TextPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCallIn] | None = None
    tool_call_id: str | None = None
    function_call: FunctionCall | None = None

    @field_validator("content", mode="before")
    @classmethod
    def _text_parts_only(cls, v: Any) -> Any:
        # Say what is wrong with an image or audio part, rather than "not a string".
        if isinstance(v, list):
            for part in v:
                kind = part.get("type") if isinstance(part, dict) else None
                if kind not in ("text", None):
                    raise ValueError(f"Content parts of type '{kind}' are not supported; "
                                     "the models served here read text only.")
        return v

    def as_template_dict(self) -> dict[str, Any]:
        """The message as chat templates expect it: text content as one string."""
        out = self.model_dump(exclude_none=True)
        if self.role == "function":
            out["role"] = "tool"
        call = out.pop("function_call", None)
        if call and not self.tool_calls:
            out["tool_calls"] = [{"id": LEGACY_CALL_ID, "type": "function", "function": call}]
        if isinstance(self.content, list):
            out["content"] = "".join(part.text for part in self.content)
        else:
            out["content"] = self.content or ""
        return out


class FunctionDef(NullMeansUnset):
    model_config = ConfigDict(extra="allow", strict=True)
    name: str = Field(min_length=1, max_length=64)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(NullMeansUnset):
    model_config = ConfigDict(extra="allow", strict=True)
    type: Literal["function"]
    function: FunctionDef


class NamedFunction(NullMeansUnset):
    model_config = ConfigDict(strict=True)
    name: str


class NamedToolChoice(NullMeansUnset):
    model_config = ConfigDict(extra="allow", strict=True)
    type: Literal["function"]
    function: NamedFunction


class JSONSchemaFormat(NullMeansUnset):
    model_config = ConfigDict(extra="allow", strict=True, populate_by_name=True)
    name: str = "response"
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class ResponseFormat(NullMeansUnset):
    model_config = ConfigDict(extra="allow", strict=True)
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchemaFormat | None = None

    def schema_or_none(self) -> dict[str, Any] | None:
        """The JSON schema the output must follow ({} = any object), None for text."""
        if self.type == "text":
            return None
        if self.type == "json_object":
            return {}
        if self.json_schema is None:
            raise ValueError("response_format of type 'json_schema' needs 'json_schema'.")
        return self.json_schema.schema_ or {}


class StreamOptions(NullMeansUnset):
    model_config = ConfigDict(extra="allow", strict=True)
    include_usage: bool = False


Stop = str | Annotated[list[str], Field(max_length=16)] | None


class _Sampling(_Request):
    """The sampling fields shared by chat and text completions."""

    model: str = Field(min_length=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, ge=0.0, le=1.0)
    top_k: int | None = Field(default=None, ge=0)
    min_p: float | None = Field(default=None, ge=0.0, le=1.0)
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    repeat_penalty: float | None = Field(default=None, gt=0.0)
    seed: int | None = None
    stop: Stop = None
    max_tokens: int | None = None
    n: int = Field(default=1, ge=1)  # the upper bound is limits.max_n (api/limits.py)
    logit_bias: dict[str, float] | None = None
    ignore_eos: bool = Field(default=False, description="Generate until max_tokens or a "
                             "stop string, never ending at the model's end token")
    stream: bool = False
    stream_options: StreamOptions | None = None
    ttl: float | None = Field(default=None, description="Idle seconds before a model "
                              "loaded for this request is unloaded")

    @field_validator("max_tokens", "max_completion_tokens", check_fields=False)
    @classmethod
    def _positive_or_unlimited(cls, v: int | None) -> int | None:
        if v is not None and v < 1 and v != -1:
            raise ValueError("must be a positive integer, or -1 for no limit")
        return v

    def sampling_params(self) -> SamplingParams:
        given = {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k,
            "min_p": self.min_p,
            "presence_penalty": self.presence_penalty,
            "frequency_penalty": self.frequency_penalty,
            "repeat_penalty": self.repeat_penalty,
            "seed": self.seed,
            "logit_bias": self._logit_bias(),
            "ignore_eos": self.ignore_eos,
        }
        return SamplingParams(**{k: v for k, v in given.items() if v is not None})

    def _logit_bias(self) -> tuple[tuple[int, float], ...] | None:
        if not self.logit_bias:
            return None
        out = []
        for key, bias in self.logit_bias.items():
            if not key.lstrip("-").isdigit() or not -100 <= bias <= 100:
                raise ValueError("logit_bias maps token ids to biases between -100 and 100.")
            # OpenAI's -100 means "never"; llama.cpp adds the bias to the logit.
            out.append((int(key), float("-inf") if bias <= -100 else bias))
        return tuple(out)

    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = None
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool = True
    # The deprecated functions API: mapped to tools, answered in `function_call`.
    functions: list[FunctionDef] | None = Field(default=None, min_length=1)
    function_call: Literal["none", "auto"] | NamedFunction | None = None
    response_format: ResponseFormat | None = None
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high"] | None = None
    chat_template_kwargs: TemplateVariables | None = None

    @model_validator(mode="after")
    def _tools_or_functions(self) -> ChatCompletionRequest:
        if self.functions and self.tools:
            raise ValueError("Use either 'tools' or the deprecated 'functions', not both.")
        return self

    @property
    def legacy_functions(self) -> bool:
        """Whether calls are answered in the deprecated `function_call` shape."""
        return bool(self.functions)

    def chat_spec(self) -> ChatSpec:
        tool_choice: Any = self.tool_choice or "auto"
        if isinstance(tool_choice, NamedToolChoice):
            tool_choice = tool_choice.model_dump()
        tools = [t.model_dump(exclude_none=True) for t in self.tools or []]
        if self.functions:
            tools = [{"type": "function", "function": f.model_dump(exclude_none=True)}
                     for f in self.functions]
            tool_choice = self.function_call or "auto"
            if isinstance(tool_choice, NamedFunction):
                tool_choice = {"type": "function", "function": {"name": tool_choice.name}}
        return ChatSpec(
            messages=[m.as_template_dict() for m in self.messages],
            sampling=self.sampling_params(),
            max_tokens=self.token_limit(),
            stop=self.stop_list(),
            tools=tools,
            tool_choice=tool_choice,
            # The functions API made one call per reply.
            parallel_tool_calls=self.parallel_tool_calls and not self.functions,
            json_schema=self.response_format.schema_or_none() if self.response_format
            else None,
            logprobs=(self.top_logprobs or 0) if self.logprobs else None,
            n=self.n,
            stream=self.stream,
            template_variables={**reasoning_variables(self.reasoning_effort),
                                **(self.chat_template_kwargs or {})},
        )

    def token_limit(self) -> int | None:
        limit = self.max_completion_tokens or self.max_tokens
        return None if limit in (None, -1) else limit


class CompletionRequest(_Sampling):
    prompt: str | list[str] | list[int] | list[list[int]]
    max_tokens: int | None = 16  # OpenAI's default for text completions
    echo: bool = False
    logprobs: int | None = Field(default=None, ge=0, le=20, description="Log-probabilities "
                                 "of each token and of the N most likely at its place; "
                                 "with echo, of the prompt's tokens too")

    @field_validator("max_tokens")
    @classmethod
    def _positive_or_unlimited(cls, v: int | None) -> int | None:
        # 0 is allowed here, as in OpenAI's API: with echo and logprobs it scores a prompt.
        if v is not None and v < 0 and v != -1:
            raise ValueError("must be 0 or more, or -1 for no limit")
        return v

    def token_limit(self) -> int | None:
        return None if self.max_tokens in (None, -1) else self.max_tokens


class EmbeddingRequest(_Request):
    model: str = Field(min_length=1)
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)
    ttl: float | None = None


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(12)}"


def now() -> int:
    return int(time.time())


def usage(counts: TokenUsage) -> dict[str, Any]:
    return {
        "prompt_tokens": counts.prompt,
        "completion_tokens": counts.completion,
        "total_tokens": counts.prompt + counts.completion,
        "prompt_tokens_details": {"cached_tokens": counts.cached},
    }


def logprobs_object(entries: Sequence[TokenLogprob]) -> dict[str, Any]:
    """OpenAI's `choice.logprobs` for a chat completion."""
    def token(piece: bytes) -> str:
        return piece.decode("utf-8", errors="replace")

    return {
        "content": [{
            "token": token(e.piece),
            "logprob": e.logprob,
            "bytes": list(e.piece),
            "top_logprobs": [{"token": token(p), "logprob": lp, "bytes": list(p)}
                             for _, p, lp in e.top],
        } for e in entries],
        "refusal": None,
    }

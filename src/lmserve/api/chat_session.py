"""One chat request, whichever API family asked for it (OpenAI chat, Responses,
Anthropic Messages): render the conversation with the model's template, constrain the
output (tools, JSON schemas), run n generations, and turn the generated text into
content, reasoning and tool calls.

The API modules only translate their wire format to a ChatSpec and the events back.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import Any

from lmserve.api.errors import APIError
from lmserve.api.openai.generation import finish_reason, merge
from lmserve.api.schema_grammar import schema_grammar, tool_call_grammar
from lmserve.engine import Delta, Done, SamplingParams
from lmserve.engine.request import TokenLogprob
from lmserve.models import GenerationStream, Model
from lmserve.parsers import (
    ContentDelta,
    ReasoningDelta,
    ReasoningParser,
    ReasoningToolParser,
    ToolCall,
    ToolCallArgsDelta,
    ToolCallParser,
    ToolCallStart,
    family_for_template,
    prompt_opens_reasoning,
    reasoning_for_template,
)
from lmserve.parsers.registry import PARSERS


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


@dataclass(frozen=True)
class LogprobsDelta:
    entries: tuple[TokenLogprob, ...]


@dataclass(frozen=True)
class Finish:
    reason: str  # stop | length | tool_calls
    done: Done


ChatEvent = ContentDelta | ReasoningDelta | ToolCallStart | ToolCallArgsDelta | \
    LogprobsDelta | Finish


@dataclass
class ChatChoice:
    index: int
    content: str | None
    reasoning: str | None
    tool_calls: list[ToolCall]
    finish_reason: str
    logprobs: list[TokenLogprob]
    done: Done


# -- tools ----------------------------------------------------------------------------


def _tool_functions(spec: ChatSpec) -> list[dict[str, Any]]:
    functions = []
    for i, tool in enumerate(spec.tools):
        fn = tool.get("function") if tool.get("type") == "function" else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
            raise APIError(400, "Each tool must be {'type': 'function', 'function': "
                                "{'name': ..., 'parameters': {...}}}.", param=f"tools[{i}]")
        functions.append(fn)
    return functions


def _forced_function(spec: ChatSpec, names: list[str]) -> str | None:
    """The function name tool_choice forces, if it names one."""
    choice = spec.tool_choice
    if not isinstance(choice, dict):
        return None
    name = (choice.get("function") or {}).get("name") or choice.get("name")
    if name not in names:
        raise APIError(400, f"tool_choice names '{name}', which is not among the tools.",
                       param="tool_choice")
    return name


_MARKERS = {
    "hermes": ('"<tool_call>\\n"', '"\\n</tool_call>"'),
    "mistral": ('"[TOOL_CALLS]["', '"]"'),
}


def _tool_call_grammar(family: str, functions: list[dict[str, Any]]) -> str:
    """A grammar that admits exactly one well-formed call in the family's format."""
    args_key = "parameters" if family == "llama3" else "arguments"
    return tool_call_grammar(functions, args_key, _MARKERS.get(family, ("", "")))


def _tools_system_prompt(functions: list[dict[str, Any]]) -> str:
    """For templates that know nothing of tools: describe them in a system message."""
    listing = "\n".join(json.dumps(fn, ensure_ascii=False) for fn in functions)
    return (
        "You can call these functions:\n" + listing + "\n\n"
        "To call a function, reply with only a JSON object of the form "
        '{"name": <function name>, "arguments": <arguments object>} and nothing else. '
        "Otherwise, answer normally."
    )


# -- messages -------------------------------------------------------------------------


def _template_messages(messages: list[dict[str, Any]], native_tools: bool
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


# -- running --------------------------------------------------------------------------


class ChatRun:
    """The n generations of one chat request, as parsed events or collected choices."""

    def __init__(self, streams: list[GenerationStream],
                 parsers: list[ToolCallParser | ReasoningParser | None],
                 single_call: bool) -> None:
        self.streams = streams
        self._parsers = parsers
        self._single_call = single_call

    def cancel(self) -> None:
        for s in self.streams:
            s.cancel()

    async def events(self) -> AsyncIterator[tuple[int, ChatEvent]]:
        called = [False] * len(self.streams)
        async for i, event in merge(self.streams):
            if isinstance(event, Delta):
                if event.logprobs:
                    yield i, LogprobsDelta(event.logprobs)
                for out in self._parse(i, event.text):
                    called[i] |= isinstance(out, ToolCallStart)
                    yield i, out
            elif isinstance(event, Done):
                parser = self._parsers[i]
                for out in (parser.finish() if parser else []):
                    called[i] |= isinstance(out, ToolCallStart)
                    yield i, out
                # A call cut off by the token limit ends as "length", like any text.
                called[i] &= event.finish_reason != "length"
                yield i, Finish("tool_calls" if called[i] else finish_reason(event), event)

    def _parse(self, i: int, text: str) -> list:
        parser = self._parsers[i]
        if parser is None:
            return [ContentDelta(text)] if text else []
        events = parser.feed(text)
        if self._single_call:
            events = [e for e in events
                      if not isinstance(e, ToolCallStart | ToolCallArgsDelta) or e.index == 0]
        return events

    async def collect(self) -> list[ChatChoice]:
        parts: dict[int, dict[str, Any]] = {
            i: {"content": [], "reasoning": [], "calls": [], "logprobs": []}
            for i in range(len(self.streams))
        }
        choices: dict[int, ChatChoice] = {}
        async for i, event in self.events():
            p = parts[i]
            if isinstance(event, ContentDelta):
                p["content"].append(event.text)
            elif isinstance(event, ReasoningDelta):
                p["reasoning"].append(event.text)
            elif isinstance(event, ToolCallStart):
                p["calls"].append(ToolCall(event.name, "", id=event.id))
            elif isinstance(event, ToolCallArgsDelta):
                p["calls"][-1].arguments += event.text
            elif isinstance(event, LogprobsDelta):
                p["logprobs"].extend(event.entries)
            elif isinstance(event, Finish):
                content = "".join(p["content"])
                choices[i] = ChatChoice(
                    index=i,
                    content=None if p["calls"] and not content else content,
                    reasoning="".join(p["reasoning"]) if p["reasoning"] else None,
                    tool_calls=p["calls"],
                    finish_reason=event.reason,
                    logprobs=p["logprobs"],
                    done=event.done,
                )
        return [choices[i] for i in sorted(choices)]


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
    functions = _tool_functions(spec) if spec.tool_choice != "none" else []
    native_tools = bool(functions) and "tools" in template
    messages = _template_messages(spec.messages, native_tools)
    if functions and not native_tools:
        messages = [{"role": "system", "content": _tools_system_prompt(functions)}, *messages]
    text = model.template.render(messages, tools=spec.tools if native_tools else None)
    family = family_for_template(template) if native_tools else "generic"
    return ChatPrompt(text, model.tokenize_rendered(text), functions, family)


def start_chat(model: Model, spec: ChatSpec) -> ChatRun:
    """Validates and submits the request: every 4xx is raised here, before streaming."""
    template = model.template.source
    prompt = render_prompt(model, spec)
    functions, family = prompt.functions, prompt.family
    names = [fn["name"] for fn in functions]
    forced = _forced_function(spec, names) if functions else None
    if spec.tool_choice == "required" and not functions:
        raise APIError(400, "tool_choice is 'required' but no tools were given.",
                       param="tool_choice")

    grammar = None
    if functions and (forced or spec.tool_choice == "required"):
        chosen = [fn for fn in functions if fn["name"] == forced] if forced else functions
        grammar = _tool_call_grammar(family, chosen)
    elif spec.json_schema is not None:
        grammar = schema_grammar(spec.json_schema or {"type": "object"})

    reasoning = reasoning_for_template(template)
    opens = prompt_opens_reasoning(prompt.text)

    def parser() -> ToolCallParser | ReasoningParser | None:
        if functions:
            tools = PARSERS[family](stream_arguments=spec.stream)
            return ReasoningToolParser(tools, start_in_reasoning=opens) if reasoning else tools
        return ReasoningParser(start_in_reasoning=opens) if reasoning else None

    sampling = replace(spec.sampling, grammar=grammar)
    streams: list[GenerationStream] = []
    try:
        for i in range(spec.n):
            seeded = sampling if sampling.seed is None else replace(sampling,
                                                                      seed=sampling.seed + i)
            streams.append(model.generate(prompt.tokens, seeded, max_tokens=spec.max_tokens,
                                          stop=spec.stop, logprobs=spec.logprobs,
                                          render_special=bool(functions)))
    except Exception:
        for s in streams:
            s.cancel()
        raise
    return ChatRun(streams, [parser() for _ in streams],
                   single_call=not spec.parallel_tool_calls)


def logprobs_object(entries: list[TokenLogprob] | tuple[TokenLogprob, ...]) -> dict[str, Any]:
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

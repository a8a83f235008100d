"""Running a chat request: the n generations submitted, their text parsed into content,
reasoning and tool calls."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

from lmserve.api.chat.constraints import output_grammar
from lmserve.api.chat.events import ChatEvent, Finish, LogprobsDelta
from lmserve.api.chat.messages import render_prompt
from lmserve.api.chat.spec import ChatSpec
from lmserve.api.chat.tools import forced_function
from lmserve.api.generation import GenerationRun, finish_reason
from lmserve.engine import Delta, Done, PromptProgress
from lmserve.models import GenerationStream, Model
from lmserve.parsers import (
    ContentDelta,
    ReasoningParser,
    ReasoningToolParser,
    ToolCallArgsDelta,
    ToolCallParser,
    ToolCallStart,
    prompt_opens_reasoning,
    reasoning_for_template,
)
from lmserve.parsers.registry import PARSERS

Parser = ToolCallParser | ReasoningParser | None


class ChatRun(GenerationRun):
    """The n generations of one chat request, as parsed events."""

    def __init__(self, streams: list[GenerationStream], parsers: list[Parser],
                 single_call: bool) -> None:
        super().__init__(streams)
        self._parsers = parsers
        self._single_call = single_call

    async def events(self) -> AsyncIterator[tuple[int, ChatEvent]]:
        called = [False] * len(self.streams)
        async for i, event in super().events():
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
            elif isinstance(event, PromptProgress):
                yield i, event

    def _parse(self, i: int, text: str) -> list:
        parser = self._parsers[i]
        if parser is None:
            return [ContentDelta(text)] if text else []
        events = parser.feed(text)
        if self._single_call:
            events = [e for e in events
                      if not isinstance(e, ToolCallStart | ToolCallArgsDelta) or e.index == 0]
        return events


def start_chat(model: Model, spec: ChatSpec) -> ChatRun:
    """Validates and submits the request: every 4xx is raised here, before streaming."""
    template = model.template.source
    prompt = render_prompt(model, spec)
    functions, family = prompt.functions, prompt.family
    forced = forced_function(spec, functions)
    grammar = output_grammar(spec, functions, forced, family)
    reasoning = reasoning_for_template(template)
    opens = prompt_opens_reasoning(prompt.text)

    def parser() -> Parser:
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
                                          render_special=bool(functions),
                                          report_progress=spec.report_progress))
    except Exception:
        for s in streams:
            s.cancel()
        raise
    return ChatRun(streams, [parser() for _ in streams],
                   single_call=not spec.parallel_tool_calls)

"""Splits `<think>...</think>` reasoning from the answer that follows it."""

from collections.abc import Iterable
from enum import Enum, auto

from lmserve.parsers.base import (
    ContentDelta,
    ParsedMessage,
    ReasoningDelta,
    StreamEvent,
    TextTrimmer,
    ToolCallParser,
    assemble_events,
    held_marker_length,
)

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"


class _State(Enum):
    START = auto()
    REASONING = auto()
    CONTENT = auto()


def prompt_opens_reasoning(prompt: str) -> bool:
    """Whether a rendered prompt ends inside an open think block.

    Some templates (DeepSeek-R1 for one) put `<think>` in the generation prompt; the
    output then starts inside the reasoning and only contains `</think>`.
    """
    return prompt.rstrip().endswith(THINK_OPEN)


class ReasoningParser:
    """Streams reasoning deltas and content deltas out of generated text.

    The reasoning is what lies between a leading `<think>` and the first `</think>`, or,
    with `start_in_reasoning`, from the start of the text to the first `</think>`. A think
    block left open at the end (generation cut short) is all reasoning. Without a leading
    `<think>` (and not starting in reasoning) the whole text is content. Both parts are
    stripped of their outer whitespace.
    """

    def __init__(self, start_in_reasoning: bool = False) -> None:
        self.start_in_reasoning = start_in_reasoning
        self._state = _State.START
        self._buf = ""
        self._finished = False
        self._reasoning = TextTrimmer()
        self._content = TextTrimmer()

    def parse(self, text: str) -> ParsedMessage:
        """Split a complete text; the content of the result is a string, never None."""
        worker = ReasoningParser(self.start_in_reasoning)
        return assemble_events(worker.feed(text) + worker.finish())

    def feed(self, delta: str) -> list[ContentDelta | ReasoningDelta]:
        if self._finished:
            raise RuntimeError("feed() called after finish()")
        self._buf += delta
        return self._drain(final=False)

    def finish(self) -> list[ContentDelta | ReasoningDelta]:
        if self._finished:
            return []
        self._finished = True
        return self._drain(final=True)

    def _drain(self, final: bool) -> list[ContentDelta | ReasoningDelta]:
        if self._state is _State.START:
            self._decide_start(final)
        if self._state is _State.REASONING:
            return self._drain_reasoning(final)
        if self._state is _State.CONTENT:
            return self._drain_content()
        return []

    def _decide_start(self, final: bool) -> None:
        text = self._buf.lstrip()
        if text.startswith(THINK_OPEN):
            self._buf = text[len(THINK_OPEN) :]
            self._state = _State.REASONING
        elif THINK_OPEN.startswith(text) and not final:
            return
        elif self.start_in_reasoning:
            self._state = _State.REASONING
        else:
            self._state = _State.CONTENT

    def _drain_reasoning(self, final: bool) -> list[ContentDelta | ReasoningDelta]:
        close = self._buf.find(THINK_CLOSE)
        if close < 0:
            keep = 0 if final else held_marker_length(self._buf, [THINK_CLOSE])
            cut = len(self._buf) - keep
            text, self._buf = self._buf[:cut], self._buf[cut:]
            return self._reasoning_events(text)
        events = self._reasoning_events(self._buf[:close])
        self._buf = self._buf[close + len(THINK_CLOSE) :]
        self._state = _State.CONTENT
        return events + self._drain_content()

    def _drain_content(self) -> list[ContentDelta | ReasoningDelta]:
        out = self._content.push(self._buf)
        self._buf = ""
        return [ContentDelta(out)] if out else []

    def _reasoning_events(self, text: str) -> list[ContentDelta | ReasoningDelta]:
        out = self._reasoning.push(text)
        return [ReasoningDelta(out)] if out else []


class ReasoningToolParser(ToolCallParser):
    """Reasoning split first, then tool calls parsed from the answer only.

    Calls a model drafts while thinking stay in the reasoning, as they are not made.
    """

    def __init__(self, tools: ToolCallParser, start_in_reasoning: bool = False) -> None:
        self.tools = tools
        self.start_in_reasoning = start_in_reasoning
        self._reasoning = ReasoningParser(start_in_reasoning)

    def clone(self) -> "ReasoningToolParser":
        return ReasoningToolParser(self.tools.clone(), self.start_in_reasoning)

    def feed(self, delta: str) -> list[StreamEvent]:
        return self._route(self._reasoning.feed(delta))

    def finish(self) -> list[StreamEvent]:
        return self._route(self._reasoning.finish()) + self.tools.finish()

    def _route(self, events: Iterable[ContentDelta | ReasoningDelta]) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        for event in events:
            if isinstance(event, ContentDelta):
                out += self.tools.feed(event.text)
            else:
                out.append(event)
        return out

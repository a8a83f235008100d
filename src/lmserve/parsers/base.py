"""Common types for turning generated text into OpenAI chat message parts.

A parser works on a whole text (`parse`) or on a stream of text deltas (`feed` and
`finish`). Both paths run the same state machine, so a stream always reassembles to
exactly what `parse` returns for the same text.
"""

import json
import secrets
import string
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum, auto
from typing import Any

from lmserve.parsers.call_stream import CallStream, Status, calls_start

_ID_ALPHABET = string.ascii_letters + string.digits
_DECODER = json.JSONDecoder()

# Keys a bare JSON object may have and still be read as a call when no marker announced it.
_STRICT_CALL_KEYS = frozenset({"name", "arguments", "parameters", "type", "id"})
_ARGUMENT_KEYS = frozenset({"arguments", "parameters"})
_FUNCTION_WRAPPER_KEYS = frozenset({"id", "type", "function"})


def new_call_id() -> str:
    """Return an OpenAI-style tool call id: "call_" and 24 random alphanumerics."""
    return "call_" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(24))


@dataclass
class ToolCall:
    """One function call; `arguments` is a JSON object encoded as a string."""

    name: str
    arguments: str
    # Ids are random, so equality compares only what the model produced.
    id: str = field(default_factory=new_call_id, compare=False)

    def to_openai(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


@dataclass
class ParsedMessage:
    """An assistant message split into its parts.

    `content` is None only when the message is made of tool calls and nothing else;
    a message without tool calls always has a string, possibly empty.
    """

    content: str | None
    tool_calls: list[ToolCall] = field(default_factory=list)
    reasoning_content: str | None = None

    def to_openai(self) -> dict[str, Any]:
        """The OpenAI `message` object; keys with nothing to say are left out."""
        message: dict[str, Any] = {"role": "assistant", "content": self.content}
        if self.tool_calls:
            message["tool_calls"] = [call.to_openai() for call in self.tool_calls]
        if self.reasoning_content is not None:
            message["reasoning_content"] = self.reasoning_content
        return message


@dataclass(frozen=True)
class ContentDelta:
    text: str


@dataclass(frozen=True)
class ReasoningDelta:
    text: str


@dataclass(frozen=True)
class ToolCallStart:
    index: int
    id: str
    name: str


@dataclass(frozen=True)
class ToolCallArgsDelta:
    index: int
    text: str


StreamEvent = ContentDelta | ReasoningDelta | ToolCallStart | ToolCallArgsDelta


def assemble_events(events: Iterable[StreamEvent]) -> ParsedMessage:
    """Rebuild the message a stream of events describes.

    Raises ValueError on an event sequence no parser may produce (empty text, arguments
    before their call start, indexes out of order), so it doubles as a stream check.
    """
    content: list[str] = []
    reasoning: list[str] = []
    calls: list[ToolCall] = []
    for event in events:
        if isinstance(event, ToolCallStart):
            if event.index != len(calls) or not event.name:
                raise ValueError(f"unexpected tool call start {event!r}")
            calls.append(ToolCall(event.name, "", id=event.id))
            continue
        if not event.text:
            raise ValueError(f"empty event {event!r}")
        if isinstance(event, ContentDelta):
            content.append(event.text)
        elif isinstance(event, ReasoningDelta):
            reasoning.append(event.text)
        else:
            if event.index != len(calls) - 1:
                raise ValueError(f"arguments for a call that is not open: {event!r}")
            calls[-1].arguments += event.text
    text = "".join(content)
    return ParsedMessage(
        content=text if text or not calls else None,
        tool_calls=calls,
        reasoning_content="".join(reasoning) or None,
    )


def stream_parse(parser: "ToolCallParser", chunks: Iterable[str]) -> ParsedMessage:
    """Feed chunks to a fresh copy of `parser` and assemble what it emits."""
    worker = parser.clone()
    events: list[StreamEvent] = []
    for chunk in chunks:
        events.extend(worker.feed(chunk))
    events.extend(worker.finish())
    return assemble_events(events)


def held_marker_length(text: str, markers: Sequence[str]) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of a marker.

    That suffix must not be emitted yet: the next delta may complete the marker.
    """
    best = 0
    for marker in markers:
        for size in range(min(len(marker) - 1, len(text)), best, -1):
            if text.endswith(marker[:size]):
                best = size
                break
    return best


def decode_json_prefix(text: str) -> tuple[Any, int] | None:
    """Decode the JSON value at the start of `text`; return it and where it ends."""
    try:
        return _DECODER.raw_decode(text)
    except ValueError:
        return None


def decode_json_sequence(text: str) -> list[Any] | None:
    """Decode one or more whitespace-separated JSON values filling all of `text`."""
    values: list[Any] = []
    rest = text.strip()
    while rest:
        decoded = decode_json_prefix(rest)
        if decoded is None:
            return None
        values.append(decoded[0])
        rest = rest[decoded[1] :].lstrip()
    return values or None


def call_from_object(obj: object, *, strict: bool = False) -> tuple[str, str] | None:
    """Read a `{"name": ..., "arguments": {...}}` object as (name, arguments JSON).

    Also takes "parameters" for "arguments", arguments given as a JSON string, and the
    OpenAI `{"type": "function", "function": {...}}` wrapper. `strict` is for text with
    no marker announcing a call: then an arguments key is required and unknown keys are
    refused, so ordinary JSON answers such as `{"name": "Ada", "age": 36}` stay content.
    """
    if not isinstance(obj, dict):
        return None
    if "name" not in obj and "function" in obj:
        if strict and not obj.keys() <= _FUNCTION_WRAPPER_KEYS:
            return None
        obj = obj["function"]
        if not isinstance(obj, dict):
            return None
    if strict and not (obj.keys() <= _STRICT_CALL_KEYS and obj.keys() & _ARGUMENT_KEYS):
        return None
    name = obj.get("name")
    if not isinstance(name, str) or not name.strip():
        return None
    arguments = _arguments_of(obj)
    if arguments is None:
        return None
    return name.strip(), json.dumps(arguments, ensure_ascii=False)


def _arguments_of(obj: dict[str, Any]) -> dict[str, Any] | None:
    raw = obj["arguments"] if "arguments" in obj else obj.get("parameters")
    if raw is None:
        return {}
    if isinstance(raw, str):
        # Some models encode the arguments object a second time, as OpenAI does.
        if not raw.strip():
            return {}
        try:
            raw = json.loads(raw)
        except ValueError:
            return None
    return raw if isinstance(raw, dict) else None


def calls_from_values(
    values: Iterable[Any], *, strict: bool = False
) -> list[tuple[str, str]] | None:
    """Read JSON values, each a call object or a list of them; None unless all are calls."""
    calls: list[tuple[str, str]] = []
    for value in values:
        items = value if isinstance(value, list) else [value]
        for item in items:
            call = call_from_object(item, strict=strict)
            if call is None:
                return None
            calls.append(call)
    return calls or None


class TextTrimmer:
    """Strips leading and trailing whitespace from a text that arrives in pieces.

    Trailing whitespace is held until non-space text follows it, and dropped at the end.
    """

    def __init__(self) -> None:
        self._started = False
        self._pending = ""

    def push(self, text: str) -> str:
        """Add a piece; return the text that may be emitted now."""
        if not self._started:
            text = text.lstrip()
            if not text:
                return ""
            self._started = True
        text = self._pending + text
        body = text.rstrip()
        self._pending = text[len(body) :]
        return body


class ToolCallParser(ABC):
    """Splits generated text into content and tool calls.

    One instance parses one stream: call `feed` with each delta, then `finish` once.
    `parse` works on a fresh copy and leaves this instance untouched.
    """

    def parse(self, text: str) -> ParsedMessage:
        return stream_parse(self, [text])

    @abstractmethod
    def feed(self, delta: str) -> list[StreamEvent]:
        """Consume a text delta; return events that are certain by now."""

    @abstractmethod
    def finish(self) -> list[StreamEvent]:
        """Mark the end of the text; return the events still held back."""

    @abstractmethod
    def clone(self) -> "ToolCallParser":
        """A fresh parser with the same configuration and no stream state."""


class Streamed(Enum):
    """Where streaming the calls at the start of the buffer stands."""

    MORE = auto()  # waiting for text
    DONE = auto()  # the call, or the list of calls, is complete and consumed
    DECLINED = auto()  # not in the streamable form: nothing consumed, read it whole
    BROKEN = auto()  # stopped at text that does not continue the call


class BufferedParser(ToolCallParser):
    """Base for parsers that scan a text buffer with a state machine.

    Subclasses implement `_drain`, which consumes as much of `self._buf` as can be
    decided and leaves the undecided tail in it. Content goes through a TextTrimmer, so
    a message's content is the text outside calls with its outer whitespace stripped.

    By default each call is emitted whole once it is complete and valid, so a call that
    turns out to be malformed becomes content. With `stream_arguments`, a call in the
    `{"name": ..., "arguments": {...}}` form is announced as soon as its name and the
    start of its arguments are read, and the arguments follow as they arrive; such a
    call cannot be taken back, so whatever breaks it later is content after it.
    """

    def __init__(self, stream_arguments: bool = False) -> None:
        self.stream_arguments = stream_arguments
        self._buf = ""
        self._finished = False
        self._trimmer = TextTrimmer()
        self._next_index = 0
        # Length of the buffer already known to hold no complete JSON value.
        self._probed = 0
        self._call: CallStream | None = None
        self._list_open = False  # streaming the items of a `[...]` list of calls
        self._streamed_any = False

    def clone(self) -> "BufferedParser":
        return type(self)(self.stream_arguments)

    def feed(self, delta: str) -> list[StreamEvent]:
        if self._finished:
            raise RuntimeError("feed() called after finish()")
        if not delta:
            return []
        self._buf += delta
        return self._drain(final=False)

    def finish(self) -> list[StreamEvent]:
        if self._finished:
            return []
        self._finished = True
        return self._drain(final=True)

    @abstractmethod
    def _drain(self, final: bool) -> list[StreamEvent]:
        """Consume the decidable part of the buffer; on `final` consume all of it."""

    def _content(self, text: str) -> list[StreamEvent]:
        out = self._trimmer.push(text)
        return [ContentDelta(out)] if out else []

    def _emit_content_until_marker(self, markers: Sequence[str], final: bool) -> list[StreamEvent]:
        """Emit the whole buffer as content except a tail that may begin a marker."""
        keep = 0 if final else held_marker_length(self._buf, markers)
        cut = len(self._buf) - keep
        text, self._buf = self._buf[:cut], self._buf[cut:]
        return self._content(text)

    def _calls(self, calls: Iterable[tuple[str, str]]) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        for name, arguments in calls:
            index = self._next_index
            self._next_index += 1
            events.append(ToolCallStart(index, new_call_id(), name))
            events.append(ToolCallArgsDelta(index, arguments))
        return events

    def _stream_calls(self, final: bool, events: list[StreamEvent],
                      name: str | None = None) -> Streamed:
        """Stream the call object, or the list of call objects, that the buffer starts
        with; with `name`, the buffer starts with the bare arguments of that call."""
        while True:
            if self._call is None:
                if name is not None:
                    self._call = CallStream(name)
                elif self._list_open:
                    self._buf = self._buf.lstrip(" \t\r\n,")
                    if not self._buf:
                        return self._streamed(Streamed.BROKEN) if final else Streamed.MORE
                    if self._buf[0] == "]":
                        self._buf = self._buf[1:]
                        return self._streamed(Streamed.DONE)
                    self._call = CallStream()
                elif self._buf.startswith("["):
                    start = calls_start(self._buf)
                    if start is Status.MORE and not final:
                        return Streamed.MORE
                    if start is not Status.DONE:
                        return Streamed.DECLINED
                    self._buf = self._buf[1:]
                    self._list_open = True
                    continue
                else:
                    self._call = CallStream()
            call = self._call
            used, status = call.step(self._buf, final, self._call_emitter(events))
            self._buf = self._buf[used:]
            if status is Status.MORE:
                return Streamed.MORE
            self._call = None
            name = None
            if not call.started:
                return self._streamed(Streamed.BROKEN if self._streamed_any
                                      else Streamed.DECLINED)
            self._streamed_any = True
            if status is Status.ERROR or not self._list_open:
                return self._streamed(Streamed.BROKEN if status is Status.ERROR
                                      else Streamed.DONE)

    def _streamed(self, outcome: Streamed) -> Streamed:
        """Reset the streaming state once a call or list is over."""
        self._list_open = False
        self._streamed_any = False
        return outcome

    def _call_emitter(self, events: list[StreamEvent]) -> Any:
        def emit(kind: str, value: str) -> None:
            if kind == "start":
                self._next_index += 1
                events.append(ToolCallStart(self._next_index - 1, new_call_id(), value))
            else:
                events.append(ToolCallArgsDelta(self._next_index - 1, value))
        return emit

    def _decode_start(self, text: str, final: bool) -> tuple[Any, int] | None:
        """Decode the JSON object or array that `text` starts with, if complete yet.

        Such a value can only be complete once a closing bracket has arrived, so
        attempts on a growing text are skipped until one shows up past `_probed`.
        """
        fresh = text[self._probed :]
        if not final and "}" not in fresh and "]" not in fresh:
            return None
        decoded = decode_json_prefix(text)
        self._probed = len(text) if decoded is None else 0
        return decoded

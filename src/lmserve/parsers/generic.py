"""Fallback tool calls: a message that is nothing but a JSON call object."""

import re
from enum import Enum, auto
from typing import Any

from lmserve.parsers.base import BufferedParser, Streamed, StreamEvent, calls_from_values
from lmserve.parsers.call_stream import Status, calls_start

FENCE = "```"
# A fence opener and its info string, e.g. "```json\n".
_FENCE_OPEN = re.compile(r"```([A-Za-z]*)\s*")
_JSON_INFO = ("", "json")


class _State(Enum):
    START = auto()
    CONTENT = auto()
    JSON = auto()
    AFTER_CALL = auto()  # a streamed call was read: only a closing fence may follow


class GenericParser(BufferedParser):
    """Reads a message as tool calls only when the whole of it is call JSON.

    Accepted: `{"name": ..., "arguments": {...}}`, `{"tool_calls": [...]}` (items plain
    or in the OpenAI `{"type": "function", "function": {...}}` wrapper), or a list of
    call objects; optionally inside a ```json fence. Objects must have an arguments key
    and no unknown keys, so that ordinary JSON answers are not taken for calls.
    Anything else is content. A message that starts like JSON is held back until it is
    known to be a call or not, which for a call means the end of the text.
    """

    def __init__(self, stream_arguments: bool = False) -> None:
        super().__init__(stream_arguments)
        self._state = _State.START
        self._fenced = False
        # Where the JSON value starts in the buffer (after a fence opener).
        self._body_at = 0
        self._declined = False  # not a streamable call: read it whole

    def _drain(self, final: bool) -> list[StreamEvent]:
        if self._state is _State.START:
            self._decide_start(final)
        if self._state in (_State.JSON, _State.AFTER_CALL):
            return self._drain_json(final)
        if self._state is _State.CONTENT:
            events = self._content(self._buf)
            self._buf = ""
            return events
        return []

    def _decide_start(self, final: bool) -> None:
        text = self._buf.lstrip()
        if not text:
            return
        if text[0] in "{[":
            self._start_json(text, fenced=False, body_at=0)
            return
        if text.startswith(FENCE):
            opener = _FENCE_OPEN.match(text)
            assert opener is not None  # the pattern matches any text starting with a fence
            body_at = opener.end()
            if body_at == len(text) and not final:
                return
            info = opener.group(1).lower()
            if info in _JSON_INFO and text[body_at : body_at + 1] in ("{", "["):
                self._start_json(text, fenced=True, body_at=body_at)
                return
        elif FENCE.startswith(text) and not final:
            return
        self._state = _State.CONTENT

    def _start_json(self, text: str, *, fenced: bool, body_at: int) -> None:
        self._buf = text
        self._fenced = fenced
        self._body_at = body_at
        self._state = _State.JSON

    def _drain_json(self, final: bool) -> list[StreamEvent]:
        if self.stream_arguments and not self._declined:
            events = self._drain_streamed(final)
            if events is not None:
                return events
        decoded = self._decode_start(self._buf[self._body_at :], final)
        if decoded is None:
            return self._give_up() if final else []
        value, end = decoded
        calls = _calls_in(value)
        if calls is None:
            return self._give_up()
        tail = self._buf[self._body_at + end :].strip()
        if tail == "" or (self._fenced and tail == FENCE):
            # A call must be the whole message: only the end of the text confirms it.
            if not final:
                return []
            self._buf = ""
            return self._calls(calls)
        if self._fenced and FENCE.startswith(tail) and not final:
            return []
        return self._give_up()

    def _drain_streamed(self, final: bool) -> list[StreamEvent] | None:
        """Stream a call that starts the message; None when it is not streamable."""
        events: list[StreamEvent] = []
        if self._state is _State.JSON:
            if self._call is None and not self._streamed_any:
                start = calls_start(self._buf[self._body_at :])
                if start is Status.MORE and not final:
                    return events
                if start is not Status.DONE:
                    self._declined = True
                    return None
                self._buf = self._buf[self._body_at :]  # the fence opener is not content
            outcome = self._stream_calls(final, events)
            if outcome is Streamed.MORE:
                return events
            self._state = _State.AFTER_CALL
        # After the call only a closing fence may follow; anything else is content.
        tail = self._buf.strip()
        if tail == "" or (self._fenced and tail == FENCE):
            if final:
                self._buf = ""
            return events
        if self._fenced and FENCE.startswith(tail) and not final:
            return events
        return events + self._give_up()

    def _give_up(self) -> list[StreamEvent]:
        """The message is not a call: everything, from here on too, is content."""
        self._state = _State.CONTENT
        events = self._content(self._buf)
        self._buf = ""
        return events


def _calls_in(value: Any) -> list[tuple[str, str]] | None:
    if isinstance(value, dict) and "tool_calls" in value:
        if value.keys() != {"tool_calls"} or not isinstance(value["tool_calls"], list):
            return None
        return calls_from_values([value["tool_calls"]], strict=True)
    return calls_from_values([value], strict=True)

"""Llama 3.x JSON tool calls: the message is one or more `{"name", "parameters"}` objects."""

from enum import Enum, auto

from lmserve.parsers.base import BufferedParser, Streamed, StreamEvent, call_from_object

PYTHON_TAG = "<|python_tag|>"
# Characters allowed between consecutive call objects.
SEPARATORS = " \t\r\n;"


class _State(Enum):
    START = auto()
    CONTENT = auto()
    CALLS = auto()
    TAIL = auto()


class Llama3Parser(BufferedParser):
    """Parses `{"name": ..., "parameters": {...}}` messages ("arguments" also accepted).

    Calls are recognised when the message starts with `{` or after `<|python_tag|>`
    (text before the tag is content). Several calls may follow each other, separated by
    `;` or newlines. From the first thing that is not a call object, the rest of the
    text is content; a message that starts with an object that is not a call is
    therefore plain content. With no marker to announce them, call objects must have
    an arguments key and no unknown keys.
    """

    def __init__(self, stream_arguments: bool = False) -> None:
        super().__init__(stream_arguments)
        self._state = _State.START
        self._declined = False  # the object here is not streamable: read it whole

    def _drain(self, final: bool) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        while self._step(final, events):
            pass
        return events

    def _step(self, final: bool, events: list[StreamEvent]) -> bool:
        """Advance the state machine once; return False when waiting for more text."""
        if self._state is _State.START:
            return self._step_start()
        if self._state is _State.CONTENT:
            return self._step_content(final, events)
        if self._state is _State.CALLS:
            return self._step_calls(final, events)
        # TAIL: once something other than a call turned up, the rest is plain content.
        events += self._content(self._buf)
        self._buf = ""
        return False

    def _step_start(self) -> bool:
        text = self._buf.lstrip()
        if not text:
            return False
        if text.startswith("{"):
            self._buf = text
            self._state = _State.CALLS
        else:
            self._state = _State.CONTENT
        return True

    def _step_content(self, final: bool, events: list[StreamEvent]) -> bool:
        tag = self._buf.find(PYTHON_TAG)
        if tag < 0:
            events += self._emit_content_until_marker([PYTHON_TAG], final)
            return False
        events += self._content(self._buf[:tag])
        self._buf = self._buf[tag + len(PYTHON_TAG) :]
        self._state = _State.CALLS
        self._probed = 0
        return True

    def _step_calls(self, final: bool, events: list[StreamEvent]) -> bool:
        if self._call is None:  # not in the middle of a streamed call
            self._buf = self._buf.lstrip(SEPARATORS)
            if not self._buf:
                return False
            if not self._buf.startswith("{"):
                self._state = _State.TAIL
                return True
        if self.stream_arguments and not self._declined:
            outcome = self._stream_calls(final, events)
            if outcome is Streamed.MORE:
                return False
            self._declined = outcome is Streamed.DECLINED
            if outcome is Streamed.BROKEN:
                self._state = _State.TAIL
            return True
        self._declined = False
        decoded = self._decode_start(self._buf, final)
        if decoded is None:
            if final:
                self._state = _State.TAIL
            return final
        value, end = decoded
        call = call_from_object(value, strict=True)
        if call is None:
            self._state = _State.TAIL
            return True
        events += self._calls([call])
        self._buf = self._buf[end:]
        return True

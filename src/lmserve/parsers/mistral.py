"""Mistral tool calls: `[TOOL_CALLS][{...}, ...]` and `[TOOL_CALLS]name[ARGS]{...}`."""

import json
import re
from enum import Enum, auto

from lmserve.parsers.base import BufferedParser, Streamed, StreamEvent, calls_from_values

TOOL_CALLS = "[TOOL_CALLS]"
ARGS = "[ARGS]"
CALL_ID = "[CALL_ID]"
_NAME = re.compile(r"[A-Za-z0-9_.\-]+")
_CALL_ID_VALUE = re.compile(r"[A-Za-z0-9]+")


class _State(Enum):
    START = auto()
    CONTENT = auto()
    AFTER_MARKER = auto()
    JSON = auto()
    NAMED = auto()


class MistralParser(BufferedParser):
    """Parses the two Mistral tool call forms.

    - `[TOOL_CALLS][{"name": ..., "arguments": {...}}, ...]`: a JSON list (or object).
    - `[TOOL_CALLS]name[ARGS]{...}`, repeated per call; an optional `[CALL_ID]id` after
      the name is skipped, since the server assigns its own ids.

    Text before `[TOOL_CALLS]` is content. When the engine drops the control token, the
    list form arrives bare, so a message that starts with `[{` is also read as calls.
    A call that does not parse is kept as content, marker included.
    """

    def __init__(self, stream_arguments: bool = False) -> None:
        super().__init__(stream_arguments)
        self._state = _State.START
        self._declined = False  # the JSON here is not streamable: read it whole
        self._named: str | None = None  # the call whose bare arguments are streaming
        # The source text consumed for the call being read, kept for the content fallback.
        self._raw = ""

    def _drain(self, final: bool) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        while self._step(final, events):
            pass
        return events

    def _step(self, final: bool, events: list[StreamEvent]) -> bool:
        """Advance the state machine once; return False when waiting for more text."""
        if self._state is _State.START:
            return self._step_start(final)
        if self._state is _State.CONTENT:
            return self._step_content(final, events)
        if self._state is _State.AFTER_MARKER:
            return self._step_after_marker(final, events)
        if self._state is _State.JSON:
            return self._step_json(final, events)
        return self._step_named(final, events)

    def _step_start(self, final: bool) -> bool:
        text = self._buf.lstrip()
        if not text:
            return False
        if text.startswith("[") and not text.startswith(TOOL_CALLS):
            inner = text[1:].lstrip()
            if inner.startswith("{"):
                self._buf = text
                self._raw = ""
                self._state = _State.JSON
                return True
            if not final and (not inner or TOOL_CALLS.startswith(text)):
                return False
        self._state = _State.CONTENT
        return True

    def _step_content(self, final: bool, events: list[StreamEvent]) -> bool:
        marker = self._buf.find(TOOL_CALLS)
        if marker < 0:
            events += self._emit_content_until_marker([TOOL_CALLS], final)
            return False
        events += self._content(self._buf[:marker])
        self._buf = self._buf[marker + len(TOOL_CALLS) :]
        self._raw = TOOL_CALLS
        self._state = _State.AFTER_MARKER
        return True

    def _step_after_marker(self, final: bool, events: list[StreamEvent]) -> bool:
        text = self._buf.lstrip()
        if not text:
            if final:
                self._fail("", events)
            return final
        self._raw += self._buf[: len(self._buf) - len(text)]
        self._buf = text
        self._probed = 0
        self._state = _State.JSON if text[0] in "[{" else _State.NAMED
        return True

    def _step_json(self, final: bool, events: list[StreamEvent]) -> bool:
        if self.stream_arguments and not self._declined:
            outcome = self._stream_calls(final, events, self._named)
            if outcome is Streamed.MORE:
                return False
            self._declined = outcome is Streamed.DECLINED
            if not self._declined:
                self._named = None
                self._raw = ""
                self._state = _State.CONTENT
            return True
        self._declined = False
        decoded = self._decode_start(self._buf, final)
        if decoded is None:
            if final:
                self._fail(self._buf, events)
            return final
        value, end = decoded
        calls = calls_from_values([value])
        if calls is None:
            self._fail(self._buf[:end], events)
            return True
        events += self._calls(calls)
        self._buf = self._buf[end:]
        self._state = _State.CONTENT
        return True

    def _step_named(self, final: bool, events: list[StreamEvent]) -> bool:
        header = self._named_header(final)
        if header is None:
            return False
        name, body_at = header
        if not name:
            # Not a name followed by [ARGS]: the text read so far is plain content.
            self._fail(self._buf[:body_at], events)
            return True
        body = self._buf[body_at:].lstrip()
        body_at = len(self._buf) - len(body)
        if not body:
            if final:
                self._fail(self._buf, events)
            return final
        if self.stream_arguments and body.startswith("{"):
            self._named, self._buf = name, body
            self._state = _State.JSON
            return True
        decoded = self._decode_start(body, final)
        if decoded is None:
            if final:
                self._fail(self._buf, events)
            return final
        value, end = decoded
        if not isinstance(value, dict):
            self._fail(self._buf[: body_at + end], events)
            return True
        events += self._calls([(name, json.dumps(value, ensure_ascii=False))])
        self._buf = body[end:]
        self._state = _State.CONTENT
        return True

    def _named_header(self, final: bool) -> tuple[str, int] | None:
        """Read `name[ARGS]` or `name[CALL_ID]id[ARGS]` at the start of the buffer.

        Returns (name, where the arguments start), or ("", length of the text that
        rules the header out) when it cannot be one, or None while it is undecided.
        """
        name = _NAME.match(self._buf)
        name_end = name.end() if name else 0
        pos = name_end
        if self._buf.startswith(CALL_ID, pos):
            call_id = _CALL_ID_VALUE.match(self._buf, pos + len(CALL_ID))
            pos = call_id.end() if call_id else pos + len(CALL_ID)
        rest = self._buf[pos:]
        if rest.startswith(ARGS) and name_end:
            return self._buf[:name_end], pos + len(ARGS)
        if not final and _may_continue_header(rest, pos > name_end):
            return None
        return "", pos

    def _fail(self, consumed: str, events: list[StreamEvent]) -> None:
        """Give up on the current call: its source text, marker included, is content."""
        events += self._content(self._raw + consumed)
        self._buf = self._buf[len(consumed) :]
        self._raw = ""
        self._probed = 0
        self._state = _State.CONTENT


def _may_continue_header(rest: str, after_call_id: bool) -> bool:
    """Whether more text could still turn `rest` into the end of a named call header.

    An empty rest means the name (or the call id) may still be growing.
    """
    if ARGS.startswith(rest):
        return True
    return not after_call_id and CALL_ID.startswith(rest)

"""Hermes / Qwen tool calls: JSON objects inside <tool_call>...</tool_call> blocks."""

from lmserve.parsers.base import (
    BufferedParser,
    Streamed,
    StreamEvent,
    calls_from_values,
    decode_json_sequence,
)
from lmserve.parsers.call_stream import Status, calls_start

OPEN = "<tool_call>"
CLOSE = "</tool_call>"


class HermesParser(BufferedParser):
    """Parses `<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>` blocks.

    Text outside the blocks is content. A block may also hold a list of calls or several
    objects. A block whose text is not valid call JSON is kept, tags included, as content.
    A block left open at the end of the text still counts if its JSON is complete,
    because generation often stops on the closing tag.
    """

    def __init__(self, stream_arguments: bool = False) -> None:
        super().__init__(stream_arguments)
        self._in_block = False
        # Streaming: whether to try the block's start as a streamed call; whether a call
        # of this block has been streamed already.
        self._try_stream = False
        self._after_stream = False

    def _drain(self, final: bool) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        while True:
            if not self._in_block:
                start = self._buf.find(OPEN)
                if start < 0:
                    events += self._emit_content_until_marker([OPEN], final)
                    return events
                events += self._content(self._buf[:start])
                self._buf = self._buf[start + len(OPEN) :]
                self._in_block = True
                self._try_stream = self.stream_arguments
                continue
            if self._try_stream:
                outcome = self._stream_calls(final or self._head_cut_by_close(), events)
                if outcome is Streamed.MORE:
                    return events
                self._try_stream = False
                self._after_stream = outcome is not Streamed.DECLINED
                continue
            end = self._buf.find(CLOSE)
            if end < 0 and not final:
                return events
            events += self._close_block(end)

    def _head_cut_by_close(self) -> bool:
        """Whether the block closes before a call head could be complete."""
        close = self._buf.find(CLOSE)
        return self._call is None and close >= 0 and \
            calls_start(self._buf[:close]) is Status.MORE

    def _close_block(self, end: int) -> list[StreamEvent]:
        """Turn the open block, ending at `end` (or at the text end if -1), into events."""
        if end < 0:
            inner, raw, self._buf = self._buf, OPEN + self._buf, ""
        else:
            stop = end + len(CLOSE)
            inner, raw, self._buf = self._buf[:end], OPEN + self._buf[:stop], self._buf[stop:]
        self._in_block = False
        if self._after_stream:
            # After a streamed call the rest of the block is read alone: more calls,
            # or text; its tags went out with the call.
            self._after_stream = False
            raw = inner
            if not inner.strip(" \t\r\n,"):
                return []
        values = decode_json_sequence(inner)
        calls = calls_from_values(values) if values is not None else None
        return self._calls(calls) if calls else self._content(raw)

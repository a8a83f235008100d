"""Shared helpers for the parser tests: chunk a text every which way, stream it
through a fresh parser, and check the result against `parse` and a golden message."""

import json
import random
import re
from collections.abc import Callable, Sequence
from typing import Protocol

from lmserve.parsers.base import ParsedMessage, StreamEvent, ToolCallStart, assemble_events

CALL_ID = re.compile(r"call_[A-Za-z0-9]{24}")


class StreamingParser(Protocol):
    def parse(self, text: str) -> ParsedMessage: ...

    def feed(self, delta: str) -> Sequence[StreamEvent]: ...

    def finish(self) -> Sequence[StreamEvent]: ...


ParserFactory = Callable[[], StreamingParser]


def chunkings(text: str, seed: int = 1234) -> list[list[str]]:
    """The text whole, one character at a time, cut at every boundary, and at random."""
    ways = [[text], list(text)]
    ways += [[text[:cut], text[cut:]] for cut in range(1, len(text))]
    rng = random.Random(seed)
    for _ in range(25):
        chunks: list[str] = []
        pos = 0
        while pos < len(text):
            size = rng.randint(1, 12)
            chunks.append(text[pos : pos + size])
            pos += size
        ways.append(chunks)
    return ways


def stream(
    make_parser: ParserFactory, chunks: list[str]
) -> tuple[ParsedMessage, list[StreamEvent]]:
    """Feed `chunks` to a fresh parser, then finish it; return the assembled message and events."""
    parser = make_parser()
    events: list[StreamEvent] = []
    for chunk in chunks:
        events += parser.feed(chunk)
    events += parser.finish()
    return assemble_events(events), events


def assert_same_message(got: ParsedMessage, expected: ParsedMessage) -> None:
    assert got == expected
    got_args = [json.loads(call.arguments) for call in got.tool_calls]
    assert got_args == [json.loads(call.arguments) for call in expected.tool_calls]


def check_parse_golden(
    make_parser: ParserFactory,
    text: str,
    expected: ParsedMessage,
    *,
    check_ids: bool = True,
    unique_ids: bool = False,
) -> None:
    """`parse` gives the golden message (and, if asked, well-formed and distinct call ids)."""
    result = make_parser().parse(text)
    assert_same_message(result, expected)
    if check_ids:
        assert all(CALL_ID.fullmatch(call.id) for call in result.tool_calls)
    if unique_ids:
        assert len({call.id for call in result.tool_calls}) == len(result.tool_calls)


def check_stream_reassembles(
    make_parser: ParserFactory,
    text: str,
    expected: ParsedMessage,
    *,
    check_ids: bool = True,
) -> None:
    """Streaming the text in every chunking reassembles to `parse` and to the golden message."""
    full = make_parser().parse(text)
    for chunks in chunkings(text):
        got, events = stream(make_parser, chunks)
        assert_same_message(got, full)
        assert_same_message(got, expected)
        if check_ids:
            starts = [event for event in events if isinstance(event, ToolCallStart)]
            assert all(CALL_ID.fullmatch(start.id) for start in starts)

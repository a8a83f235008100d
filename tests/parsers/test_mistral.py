import json
import random
import re

import pytest

from lmserve.parsers.base import (
    ContentDelta,
    ParsedMessage,
    StreamEvent,
    ToolCall,
    ToolCallArgsDelta,
    ToolCallStart,
    assemble_events,
)
from lmserve.parsers.mistral import MistralParser

CALL_ID = re.compile(r"call_[A-Za-z0-9]{24}")

MALFORMED_LIST = 'Let me check.[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}]'
PROSE_AFTER = "[TOOL_CALLS] I cannot call a tool for that question."

CASES: list[tuple[str, str, ParsedMessage]] = [
    (
        "list-form-single",
        '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}]',
        ParsedMessage(
            content=None,
            tool_calls=[ToolCall("get_weather", '{"city": "Paris", "unit": "celsius"}')],
        ),
    ),
    (
        "list-form-multi-with-text-before",
        "Sure, I'll look up both cities.\n\n[TOOL_CALLS] "
        '[{"name": "get_weather", "arguments": {"city": "Paris"}}, '
        '{"name": "get_weather", "arguments": {"city": "São Paulo"}}]',
        ParsedMessage(
            content="Sure, I'll look up both cities.",
            tool_calls=[
                ToolCall("get_weather", '{"city": "Paris"}'),
                ToolCall("get_weather", '{"city": "São Paulo"}'),
            ],
        ),
    ),
    (
        "named-form",
        '[TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}',
        ParsedMessage(content=None, tool_calls=[ToolCall("get_weather", '{"city": "Paris"}')]),
    ),
    (
        "named-form-multi-with-call-id",
        '[TOOL_CALLS]get_weather[CALL_ID]a1B2c3D4e[ARGS]{"city": "Paris"}'
        '[TOOL_CALLS]get_time[ARGS]{"timezone": "Europe/Paris"}',
        ParsedMessage(
            content=None,
            tool_calls=[
                ToolCall("get_weather", '{"city": "Paris"}'),
                ToolCall("get_time", '{"timezone": "Europe/Paris"}'),
            ],
        ),
    ),
    (
        "named-form-braces-quotes-unicode",
        '[TOOL_CALLS]write_file[ARGS]{"path": "notes/日本.md", '
        '"text": "{\\"a\\": [1, 2]} \\u2014 ok ]}"}',
        ParsedMessage(
            content=None,
            tool_calls=[
                ToolCall(
                    "write_file", '{"path": "notes/日本.md", "text": "{\\"a\\": [1, 2]} — ok ]}"}'
                )
            ],
        ),
    ),
    (
        "bare-list-without-control-token",
        '[{"name": "get_weather", "arguments": {"city": "Paris"}}]',
        ParsedMessage(content=None, tool_calls=[ToolCall("get_weather", '{"city": "Paris"}')]),
    ),
    ("malformed-list-is-content", MALFORMED_LIST, ParsedMessage(content=MALFORMED_LIST)),
    ("prose-after-marker-is-content", PROSE_AFTER, ParsedMessage(content=PROSE_AFTER)),
    (
        "named-form-bad-args-is-content",
        "[TOOL_CALLS]get_weather[ARGS][1, 2]",
        ParsedMessage(content="[TOOL_CALLS]get_weather[ARGS][1, 2]"),
    ),
    (
        "call-then-text",
        '[TOOL_CALLS][{"name": "ping", "arguments": {}}]\nDone.',
        ParsedMessage(content="Done.", tool_calls=[ToolCall("ping", "{}")]),
    ),
    (
        "bracketed-content",
        "[1] Smith et al. (2020) describe the method; see also [Note].",
        ParsedMessage(content="[1] Smith et al. (2020) describe the method; see also [Note]."),
    ),
    (
        "bare-list-of-numbers-is-content",
        "[{}, 1, 2] is a list with an empty object.",
        ParsedMessage(content="[{}, 1, 2] is a list with an empty object."),
    ),
    (
        "partial-marker-at-end-is-content",
        "Calling [TOOL_CA",
        ParsedMessage(content="Calling [TOOL_CA"),
    ),
    ("empty-output", "", ParsedMessage(content="")),
]
IDS = [case[0] for case in CASES]
PAIRS = [case[1:] for case in CASES]


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


def stream(chunks: list[str]) -> tuple[ParsedMessage, list[StreamEvent]]:
    parser = MistralParser()
    events: list[StreamEvent] = []
    for chunk in chunks:
        events += parser.feed(chunk)
    events += parser.finish()
    return assemble_events(events), events


def assert_same_message(got: ParsedMessage, expected: ParsedMessage) -> None:
    assert got == expected
    got_args = [json.loads(call.arguments) for call in got.tool_calls]
    assert got_args == [json.loads(call.arguments) for call in expected.tool_calls]


@pytest.mark.parametrize(("text", "expected"), PAIRS, ids=IDS)
def test_parse_golden(text: str, expected: ParsedMessage) -> None:
    result = MistralParser().parse(text)
    assert_same_message(result, expected)
    assert all(CALL_ID.fullmatch(call.id) for call in result.tool_calls)


@pytest.mark.parametrize(("text", "expected"), PAIRS, ids=IDS)
def test_stream_reassembles_to_parse(text: str, expected: ParsedMessage) -> None:
    full = MistralParser().parse(text)
    for chunks in chunkings(text):
        got, events = stream(chunks)
        assert_same_message(got, full)
        assert_same_message(got, expected)
        starts = [event for event in events if isinstance(event, ToolCallStart)]
        assert all(CALL_ID.fullmatch(start.id) for start in starts)


def test_marker_prefix_is_held_back() -> None:
    parser = MistralParser()
    assert parser.feed("Checking.[TOOL_") == [ContentDelta("Checking.")]
    assert parser.feed("CALLS]get_time[AR") == []
    events = parser.feed("GS]{}")
    assert [type(event) for event in events] == [ToolCallStart, ToolCallArgsDelta]
    assert parser.finish() == []


def test_prose_after_marker_is_released_before_the_end() -> None:
    parser = MistralParser()
    assert parser.feed("[TOOL_CALLS]Sorry") == []
    events = parser.feed(", no tool fits.")
    texts = [event.text for event in events if isinstance(event, ContentDelta)]
    assert len(texts) == len(events)
    assert "".join(texts) == "[TOOL_CALLS]Sorry, no tool fits."

import pytest

from lmserve.parsers.base import (
    ContentDelta,
    ParsedMessage,
    ToolCall,
    ToolCallArgsDelta,
    ToolCallStart,
)
from lmserve.parsers.mistral import MistralParser
from tests.parsers.streaming import check_parse_golden, check_stream_reassembles

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


@pytest.mark.parametrize(("text", "expected"), PAIRS, ids=IDS)
def test_parse_golden(text: str, expected: ParsedMessage) -> None:
    check_parse_golden(MistralParser, text, expected)


@pytest.mark.parametrize(("text", "expected"), PAIRS, ids=IDS)
def test_stream_reassembles_to_parse(text: str, expected: ParsedMessage) -> None:
    check_stream_reassembles(MistralParser, text, expected)


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

import pytest

from lmserve.parsers.base import (
    ContentDelta,
    ParsedMessage,
    ToolCall,
    ToolCallArgsDelta,
    ToolCallStart,
)
from lmserve.parsers.hermes import HermesParser
from tests.parsers.streaming import CALL_ID, check_parse_golden, check_stream_reassembles

WEATHER = (
    "I'll check the current weather in Paris for you.\n\n"
    "<tool_call>\n"
    '{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}\n'
    "</tool_call>"
)
TWO_CALLS = (
    "<tool_call>\n"
    '{"name": "get_weather", "arguments": {"city": "Paris"}}\n'
    "</tool_call>\n"
    "<tool_call>\n"
    '{"name": "get_time", "arguments": {"timezone": "Europe/Paris"}}\n'
    "</tool_call>"
)
TRICKY_ARGS = (
    "<tool_call>\n"
    '{"name": "run_python", "arguments": {"code": "def f(x):\\n    return {\\"k\\": x}\\n'
    "print(f('}'))\"}}\n"
    "</tool_call>\n"
    "<tool_call>\n"
    '{"name": "translate", "arguments": {"text": "Gr\\u00fc\\u00dfe aus K\\u00f6ln \\u2014 '
    '東京 🌸", "target": "ja"}}\n'
    "</tool_call>"
)
MALFORMED = (
    "Let me look that up.\n"
    "<tool_call>\n"
    '{"name": "get_weather", "arguments": {"city": "Paris"}\n'
    "</tool_call>"
)
MALFORMED_THEN_VALID = (
    "<tool_call>\n"
    "{name: get_weather}\n"
    "</tool_call>\n"
    "<tool_call>\n"
    '{"name": "get_weather", "arguments": {"city": "Lyon"}}\n'
    "</tool_call>"
)
TEXT_AROUND = (
    "Searching now.\n"
    "<tool_call>\n"
    '{"name": "search", "arguments": {"query": "<tool_call> syntax"}}\n'
    "</tool_call>\n"
    "I'll summarise the results next."
)

CASES: list[tuple[str, str, ParsedMessage]] = [
    (
        "text-then-call",
        WEATHER,
        ParsedMessage(
            content="I'll check the current weather in Paris for you.",
            tool_calls=[ToolCall("get_weather", '{"city": "Paris", "unit": "celsius"}')],
        ),
    ),
    (
        "two-calls",
        TWO_CALLS,
        ParsedMessage(
            content=None,
            tool_calls=[
                ToolCall("get_weather", '{"city": "Paris"}'),
                ToolCall("get_time", '{"timezone": "Europe/Paris"}'),
            ],
        ),
    ),
    (
        "braces-quotes-unicode",
        TRICKY_ARGS,
        ParsedMessage(
            content=None,
            tool_calls=[
                ToolCall(
                    "run_python",
                    '{"code": "def f(x):\\n    return {\\"k\\": x}\\nprint(f(\'}\'))"}',
                ),
                ToolCall("translate", '{"text": "Grüße aus Köln — 東京 🌸", "target": "ja"}'),
            ],
        ),
    ),
    (
        "malformed-json-is-content",
        MALFORMED,
        ParsedMessage(content=MALFORMED),
    ),
    (
        "malformed-block-then-valid",
        MALFORMED_THEN_VALID,
        ParsedMessage(
            content="<tool_call>\n{name: get_weather}\n</tool_call>",
            tool_calls=[ToolCall("get_weather", '{"city": "Lyon"}')],
        ),
    ),
    (
        "text-before-and-after",
        TEXT_AROUND,
        ParsedMessage(
            content="Searching now.\n\nI'll summarise the results next.",
            tool_calls=[ToolCall("search", '{"query": "<tool_call> syntax"}')],
        ),
    ),
    (
        "plain-content-with-angle-brackets",
        "In HTML, write <b>bold</b> and <tool>; note that 3 < 4.\n",
        ParsedMessage(content="In HTML, write <b>bold</b> and <tool>; note that 3 < 4."),
    ),
    (
        "partial-marker-at-end-is-content",
        "Compare a<tool_",
        ParsedMessage(content="Compare a<tool_"),
    ),
    (
        "unclosed-block-with-complete-json",
        '<tool_call>\n{"name": "get_time", "arguments": {}}\n',
        ParsedMessage(content=None, tool_calls=[ToolCall("get_time", "{}")]),
    ),
    (
        "unclosed-block-truncated-json",
        'Checking.\n<tool_call>\n{"name": "get_time", "argum',
        ParsedMessage(content='Checking.\n<tool_call>\n{"name": "get_time", "argum'),
    ),
    (
        "list-in-block",
        '<tool_call>[{"name": "add", "arguments": {"a": 1, "b": 2}}, '
        '{"name": "ping", "arguments": {}}]</tool_call>',
        ParsedMessage(
            content=None,
            tool_calls=[ToolCall("add", '{"a": 1, "b": 2}'), ToolCall("ping", "{}")],
        ),
    ),
    (
        "arguments-as-json-string-and-missing",
        '<tool_call>\n{"name": "lookup", "arguments": "{\\"id\\": 7}"}\n</tool_call>\n'
        '<tool_call>\n{"name": "now"}\n</tool_call>',
        ParsedMessage(
            content=None,
            tool_calls=[ToolCall("lookup", '{"id": 7}'), ToolCall("now", "{}")],
        ),
    ),
    (
        "json-without-name-is-content",
        '<tool_call>\n{"tool": "get_time"}\n</tool_call>',
        ParsedMessage(content='<tool_call>\n{"tool": "get_time"}\n</tool_call>'),
    ),
    (
        "empty-block-is-content",
        "<tool_call></tool_call>",
        ParsedMessage(content="<tool_call></tool_call>"),
    ),
    ("empty-output", "", ParsedMessage(content="")),
]
IDS = [case[0] for case in CASES]
PAIRS = [case[1:] for case in CASES]


@pytest.mark.parametrize(("text", "expected"), PAIRS, ids=IDS)
def test_parse_golden(text: str, expected: ParsedMessage) -> None:
    check_parse_golden(HermesParser, text, expected, unique_ids=True)


@pytest.mark.parametrize(("text", "expected"), PAIRS, ids=IDS)
def test_stream_reassembles_to_parse(text: str, expected: ParsedMessage) -> None:
    check_stream_reassembles(HermesParser, text, expected)


def test_partial_marker_is_held_back() -> None:
    parser = HermesParser()
    assert parser.feed("Let me look.\n<tool_") == [ContentDelta("Let me look.")]
    assert parser.feed("call>\n") == []
    events = parser.feed('{"name": "get_time", "arguments": {}}\n</tool_call>')
    assert [type(event) for event in events] == [ToolCallStart, ToolCallArgsDelta]
    assert parser.finish() == []


def test_held_back_text_is_released_when_no_marker_follows() -> None:
    parser = HermesParser()
    assert parser.feed("a <tool") == [ContentDelta("a")]
    assert parser.feed("box> b") == [ContentDelta(" <toolbox> b")]
    assert parser.finish() == []


def test_parse_leaves_stream_state_alone() -> None:
    parser = HermesParser()
    assert parser.feed("Hello <tool") == [ContentDelta("Hello")]
    assert parser.parse(WEATHER).tool_calls
    assert parser.finish() == [ContentDelta(" <tool")]


def test_feed_after_finish_is_an_error() -> None:
    parser = HermesParser()
    parser.finish()
    with pytest.raises(RuntimeError):
        parser.feed("late")


def test_openai_message_omits_empty_parts() -> None:
    plain = HermesParser().parse("Just text.").to_openai()
    assert plain == {"role": "assistant", "content": "Just text."}
    message = HermesParser().parse(WEATHER).to_openai()
    [call] = message["tool_calls"]
    assert call["type"] == "function"
    assert call["function"] == {
        "name": "get_weather",
        "arguments": '{"city": "Paris", "unit": "celsius"}',
    }
    assert CALL_ID.fullmatch(call["id"])

import pytest

from lmserve.parsers.base import (
    ContentDelta,
    ParsedMessage,
    ToolCall,
    ToolCallArgsDelta,
    ToolCallStart,
)
from lmserve.parsers.llama3 import Llama3Parser
from tests.parsers.streaming import check_parse_golden, check_stream_reassembles

NOT_A_CALL = '{"name": "Ada Lovelace", "born": 1815, "known_for": "the Analytical Engine"}'
TRUNCATED = '{"name": "get_weather", "parameters": {"city": "Paris"}'

CASES: list[tuple[str, str, ParsedMessage]] = [
    (
        "single-call-parameters",
        '{"name": "get_weather", "parameters": {"city": "Paris", "unit": "celsius"}}',
        ParsedMessage(
            content=None,
            tool_calls=[ToolCall("get_weather", '{"city": "Paris", "unit": "celsius"}')],
        ),
    ),
    (
        "python-tag-and-arguments-key",
        '<|python_tag|>{"name": "search", "arguments": {"query": "llama 3 \\"tool use\\" {json}"}}',
        ParsedMessage(
            content=None,
            tool_calls=[ToolCall("search", '{"query": "llama 3 \\"tool use\\" {json}"}')],
        ),
    ),
    (
        "semicolon-separated",
        '{"name": "get_weather", "parameters": {"city": "Paris"}}; '
        '{"name": "get_weather", "parameters": {"city": "Berlin"}}',
        ParsedMessage(
            content=None,
            tool_calls=[
                ToolCall("get_weather", '{"city": "Paris"}'),
                ToolCall("get_weather", '{"city": "Berlin"}'),
            ],
        ),
    ),
    (
        "newline-separated-with-leading-space",
        '\n\n{"name": "add", "parameters": {"a": 2, "b": 3}}\n'
        '{"type": "function", "name": "multiply", "parameters": {"a": 4, "b": 5}}\n',
        ParsedMessage(
            content=None,
            tool_calls=[
                ToolCall("add", '{"a": 2, "b": 3}'),
                ToolCall("multiply", '{"a": 4, "b": 5}'),
            ],
        ),
    ),
    (
        "text-before-python-tag",
        'Let me search for that.<|python_tag|>{"name": "search", "parameters": '
        '{"query": "Zürich → 東京 flights 🛫"}}',
        ParsedMessage(
            content="Let me search for that.",
            tool_calls=[ToolCall("search", '{"query": "Zürich → 東京 flights 🛫"}')],
        ),
    ),
    (
        "escaped-unicode-is-normalised",
        '{"name": "echo", "parameters": {"text": "caf\\u00e9 {} [] \\\\"}}',
        ParsedMessage(content=None, tool_calls=[ToolCall("echo", '{"text": "café {} [] \\\\"}')]),
    ),
    (
        "call-then-text",
        '{"name": "get_time", "parameters": {}}\nI have asked for the time.',
        ParsedMessage(
            content="I have asked for the time.",
            tool_calls=[ToolCall("get_time", "{}")],
        ),
    ),
    (
        "plain-content",
        "The capital of France is Paris.",
        ParsedMessage(content="The capital of France is Paris."),
    ),
    ("json-answer-is-content", NOT_A_CALL, ParsedMessage(content=NOT_A_CALL)),
    ("malformed-json-is-content", TRUNCATED, ParsedMessage(content=TRUNCATED)),
    (
        "brace-prose-is-content",
        "{braces} delimit sets and dicts in Python.",
        ParsedMessage(content="{braces} delimit sets and dicts in Python."),
    ),
    (
        "python-tag-with-non-json-is-content",
        'Sure.<|python_tag|>brave_search.call(query="weather")',
        ParsedMessage(content='Sure.brave_search.call(query="weather")'),
    ),
    (
        "partial-tag-at-end-is-content",
        "Almost a tag <|python_t",
        ParsedMessage(content="Almost a tag <|python_t"),
    ),
    ("empty-output", "", ParsedMessage(content="")),
]
IDS = [case[0] for case in CASES]
PAIRS = [case[1:] for case in CASES]


@pytest.mark.parametrize(("text", "expected"), PAIRS, ids=IDS)
def test_parse_golden(text: str, expected: ParsedMessage) -> None:
    check_parse_golden(Llama3Parser, text, expected)


@pytest.mark.parametrize(("text", "expected"), PAIRS, ids=IDS)
def test_stream_reassembles_to_parse(text: str, expected: ParsedMessage) -> None:
    check_stream_reassembles(Llama3Parser, text, expected)


def test_python_tag_prefix_is_held_back() -> None:
    parser = Llama3Parser()
    assert parser.feed("One moment.<|python") == [ContentDelta("One moment.")]
    assert parser.feed('_tag|>{"name": "ping", ') == []
    events = parser.feed('"parameters": {}}')
    assert [type(event) for event in events] == [ToolCallStart, ToolCallArgsDelta]
    assert parser.finish() == []


def test_each_call_is_emitted_once_complete() -> None:
    parser = Llama3Parser()
    start, args = parser.feed('{"name": "a", "parameters": {"x": "}"}};\n{"name": "b", ')
    assert isinstance(start, ToolCallStart)
    assert (start.index, start.name) == (0, "a")
    assert args == ToolCallArgsDelta(0, '{"x": "}"}')
    start, args = parser.feed('"parameters": {}}')
    assert isinstance(start, ToolCallStart)
    assert (start.index, start.name) == (1, "b")
    assert args == ToolCallArgsDelta(1, "{}")
    assert parser.finish() == []

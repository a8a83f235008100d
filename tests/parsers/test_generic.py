import pytest

from lmserve.parsers.base import ContentDelta, ParsedMessage, ToolCall
from lmserve.parsers.generic import GenericParser
from tests.parsers.streaming import check_parse_golden, check_stream_reassembles

JSON_ANSWER = '{"name": "Ada Lovelace", "age": 36}'
CALL_THEN_TEXT = '{"name": "get_time", "arguments": {}}\nThat is the call I would make.'
TEXT_THEN_CALL = 'I would call:\n{"name": "get_time", "arguments": {}}'
MALFORMED = '{"name": "get_weather", "arguments": {"city": "Paris"'
PYTHON_FENCE = "```python\nprint({'name': 'x'})\n```"
EMPTY_CALLS = '{"tool_calls": []}'
FENCED_ANSWER = '```json\n{"answer": 42}\n```'

CASES: list[tuple[str, str, ParsedMessage]] = [
    (
        "bare-object",
        '{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}',
        ParsedMessage(
            content=None,
            tool_calls=[ToolCall("get_weather", '{"city": "Paris", "unit": "celsius"}')],
        ),
    ),
    (
        "json-fence",
        "```json\n"
        '{"name": "search", "arguments": {"query": "\\"quoted\\" {braces} 日本語"}}\n```\n',
        ParsedMessage(
            content=None,
            tool_calls=[ToolCall("search", '{"query": "\\"quoted\\" {braces} 日本語"}')],
        ),
    ),
    (
        "plain-fence-unclosed",
        '```\n{"name": "ping", "parameters": {}}',
        ParsedMessage(content=None, tool_calls=[ToolCall("ping", "{}")]),
    ),
    (
        "tool-calls-wrapper",
        '{"tool_calls": [{"name": "add", "arguments": {"a": 1, "b": 2}}, '
        '{"type": "function", "function": '
        '{"name": "echo", "arguments": "{\\"text\\": \\"h\\u00e9\\"}"}}]}',
        ParsedMessage(
            content=None,
            tool_calls=[ToolCall("add", '{"a": 1, "b": 2}'), ToolCall("echo", '{"text": "hé"}')],
        ),
    ),
    (
        "list-of-calls",
        '  [{"name": "a", "arguments": {}}, {"name": "b", "arguments": {"n": [1, {"x": null}]}}]\n',
        ParsedMessage(
            content=None,
            tool_calls=[ToolCall("a", "{}"), ToolCall("b", '{"n": [1, {"x": null}]}')],
        ),
    ),
    ("json-answer-is-content", JSON_ANSWER, ParsedMessage(content=JSON_ANSWER)),
    ("fenced-json-answer-is-content", FENCED_ANSWER, ParsedMessage(content=FENCED_ANSWER)),
    ("call-then-text-is-content", CALL_THEN_TEXT, ParsedMessage(content=CALL_THEN_TEXT)),
    ("text-then-call-is-content", TEXT_THEN_CALL, ParsedMessage(content=TEXT_THEN_CALL)),
    ("malformed-json-is-content", MALFORMED, ParsedMessage(content=MALFORMED)),
    ("python-fence-is-content", PYTHON_FENCE, ParsedMessage(content=PYTHON_FENCE)),
    (
        "plain-content",
        "\nBonjour ! Il fait 18 °C à Paris. 🌤\n",
        ParsedMessage(content="Bonjour ! Il fait 18 °C à Paris. 🌤"),
    ),
    ("empty-tool-calls-is-content", EMPTY_CALLS, ParsedMessage(content=EMPTY_CALLS)),
    ("backticks-only", "``", ParsedMessage(content="``")),
    ("empty-output", "", ParsedMessage(content="")),
]
IDS = [case[0] for case in CASES]
PAIRS = [case[1:] for case in CASES]


@pytest.mark.parametrize(("text", "expected"), PAIRS, ids=IDS)
def test_parse_golden(text: str, expected: ParsedMessage) -> None:
    check_parse_golden(GenericParser, text, expected)


@pytest.mark.parametrize(("text", "expected"), PAIRS, ids=IDS)
def test_stream_reassembles_to_parse(text: str, expected: ParsedMessage) -> None:
    check_stream_reassembles(GenericParser, text, expected)


def test_prose_streams_without_delay() -> None:
    parser = GenericParser()
    assert parser.feed("Hello") == [ContentDelta("Hello")]
    assert parser.feed(" world") == [ContentDelta(" world")]


def test_json_that_is_not_a_call_is_released_once_complete() -> None:
    parser = GenericParser()
    assert parser.feed('{"answer": ') == []
    assert parser.feed("42} and more") == [ContentDelta('{"answer": 42} and more')]


def test_call_waits_for_the_end_of_the_text() -> None:
    parser = GenericParser()
    assert parser.feed('{"name": "ping", "arguments": {}}') == []
    events = parser.finish()
    assert [type(event).__name__ for event in events] == ["ToolCallStart", "ToolCallArgsDelta"]

"""Parsers with `stream_arguments`: a call is announced once its name and the start of
its arguments are read, and the arguments follow in pieces as they are generated.

Every family's golden cases hold in this mode too, except where a call breaks after it
was announced: it stays a call, and what breaks it is content after it.
"""

import json
from functools import partial

import pytest

from lmserve.parsers.base import (
    ContentDelta,
    ParsedMessage,
    ToolCall,
    ToolCallArgsDelta,
    ToolCallStart,
)
from lmserve.parsers.generic import GenericParser
from lmserve.parsers.hermes import HermesParser
from lmserve.parsers.llama3 import Llama3Parser
from lmserve.parsers.mistral import MistralParser
from tests.parsers import test_generic, test_hermes, test_llama3, test_mistral
from tests.parsers.streaming import chunkings, stream

FAMILIES = {
    "hermes": (HermesParser, test_hermes.CASES),
    "llama3": (Llama3Parser, test_llama3.CASES),
    "mistral": (MistralParser, test_mistral.CASES),
    "generic": (GenericParser, test_generic.CASES),
}
WEATHER_ARGS = '{"city": "Paris", "unit": "celsius"}'
# Where the streamed reading differs from the whole one: the call was already out.
STREAMED_DIFFERS = {
    ("hermes", "malformed-json-is-content"): ParsedMessage(
        content="Let me look that up.",
        tool_calls=[ToolCall("get_weather", '{"city": "Paris"}')]),
    ("llama3", "malformed-json-is-content"): ParsedMessage(
        content=None, tool_calls=[ToolCall("get_weather", '{"city": "Paris"}')]),
    ("mistral", "malformed-list-is-content"): ParsedMessage(
        content="Let me check.]", tool_calls=[ToolCall("get_weather", '{"city": "Paris"}')]),
    ("generic", "call-then-text-is-content"): ParsedMessage(
        content="That is the call I would make.", tool_calls=[ToolCall("get_time", "{}")]),
    # Cut off mid-arguments: what was generated is what the call holds.
    ("generic", "malformed-json-is-content"): ParsedMessage(
        content=None, tool_calls=[ToolCall("get_weather", '{"city": "Paris"')]),
}
GOLDEN = [
    pytest.param(family, text, STREAMED_DIFFERS.get((family, case_id), expected),
                 id=f"{family}-{case_id}")
    for family, (_, cases) in FAMILIES.items()
    for case_id, text, expected in cases
]


@pytest.mark.parametrize(("family", "text", "expected"), GOLDEN)
def test_golden_cases_hold_when_streaming_arguments(family, text, expected):
    make = partial(FAMILIES[family][0], stream_arguments=True)
    assert make().parse(text) == expected
    # Every chunking reassembles to the same message (compared as text: a call cut off
    # mid-arguments holds no complete JSON).
    for chunks in chunkings(text):
        assert stream(make, chunks)[0] == expected


# A call in each family's format, and the text fed before its arguments are complete.
STREAMED_CALLS = {
    "hermes": ('Sure.\n<tool_call>\n{"name": "get_weather", "arguments": '
               '{"city": "Paris", "unit": "celsius"}}\n</tool_call>', HermesParser),
    "llama3": ('{"name": "get_weather", "parameters": {"city": "Paris", "unit": "celsius"}}',
               Llama3Parser),
    "mistral-list": ('[TOOL_CALLS][{"name": "get_weather", "arguments": '
                     '{"city": "Paris", "unit": "celsius"}}]', MistralParser),
    "mistral-named": ('[TOOL_CALLS]get_weather[ARGS]{"city": "Paris", "unit": "celsius"}',
                      MistralParser),
    "generic": ('{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}',
                GenericParser),
    "generic-fenced": ('```json\n{"name": "get_weather", "arguments": '
                       '{"city": "Paris", "unit": "celsius"}}\n```', GenericParser),
}


@pytest.mark.parametrize(("text", "parser"), STREAMED_CALLS.values(), ids=STREAMED_CALLS.keys())
def test_arguments_stream_in_several_fragments(text, parser):
    """Fed a few characters at a time, the call is announced before its arguments are
    complete, and the arguments come in several pieces that add up to the whole."""
    streaming = parser(stream_arguments=True)
    events, fed_when_started = [], None
    for start in range(0, len(text), 4):
        events += streaming.feed(text[start:start + 4])
        if fed_when_started is None and any(isinstance(e, ToolCallStart) for e in events):
            fed_when_started = start + 4
    events += streaming.finish()
    assert fed_when_started is not None and fed_when_started < text.index('"Paris"')
    starts = [e for e in events if isinstance(e, ToolCallStart)]
    pieces = [e.text for e in events if isinstance(e, ToolCallArgsDelta)]
    assert [s.name for s in starts] == ["get_weather"]
    assert len(pieces) >= 5, pieces
    assert "".join(pieces) == WEATHER_ARGS
    assert "".join(e.text for e in events if isinstance(e, ContentDelta)) in ("", "Sure.")
    # The whole-text reading agrees.
    assert parser().parse(text).tool_calls == [ToolCall("get_weather", WEATHER_ARGS)]


def test_streamed_arguments_are_rewritten_as_json_dumps_writes_them():
    text = ('<tool_call>{"name":"f","arguments":{"s":"a\\u00e9\\ud83c\\udf38\\/\\n",'
            '"n":[1,2.50,-3e2,true,null],"o":{}}}</tool_call>')
    expected = json.dumps({"s": "aé🌸/\n", "n": [1, 2.5, -300.0, True, None], "o": {}},
                          ensure_ascii=False)
    for size in range(1, 14):
        parser = HermesParser(stream_arguments=True)
        events = [e for i in range(0, len(text), size) for e in parser.feed(text[i:i + size])]
        events += parser.finish()
        arguments = "".join(e.text for e in events if isinstance(e, ToolCallArgsDelta))
        assert arguments == expected
    assert HermesParser().parse(text).tool_calls[0].arguments == expected


def test_a_second_call_in_a_streamed_list_streams_too():
    text = ('[TOOL_CALLS][{"name": "a", "arguments": {"x": 1}}, '
            '{"name": "b", "arguments": {"y": 2}}]')
    parser = MistralParser(stream_arguments=True)
    events = [e for ch in text for e in parser.feed(ch)] + parser.finish()
    assert [(e.index, e.name) for e in events if isinstance(e, ToolCallStart)] == \
        [(0, "a"), (1, "b")]
    assert sum(isinstance(e, ToolCallArgsDelta) for e in events) > 4


def test_a_closing_tag_inside_a_streamed_argument_is_text():
    text = '<tool_call>{"name": "s", "arguments": {"q": "a </tool_call> b"}}</tool_call>'
    expected = ParsedMessage(content=None, tool_calls=[ToolCall("s", '{"q": "a </tool_call> b"}')])
    for chunks in chunkings(text):
        assert stream(partial(HermesParser, stream_arguments=True), chunks)[0] == expected


@pytest.mark.parametrize("bad", ["\\x41", "\\uZZZZ", "\x01"], ids=["escape", "unicode", "raw"])
def test_a_string_json_does_not_allow_ends_the_streamed_call(bad):
    text = '{"name": "f", "arguments": {"s": "ab' + bad + 'c"}}'
    for chunks in chunkings(text):
        message = stream(partial(GenericParser, stream_arguments=True), chunks)[0]
        assert message.tool_calls == [ToolCall("f", '{"s": "ab')]
        assert message.content == bad + "c\"}}"  # the rest is content

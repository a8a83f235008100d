from functools import partial

import pytest

from lmserve.parsers.base import ContentDelta, ParsedMessage, ReasoningDelta, ToolCall
from lmserve.parsers.hermes import HermesParser
from lmserve.parsers.reasoning import ReasoningParser, ReasoningToolParser, prompt_opens_reasoning
from tests.parsers.streaming import check_parse_golden, check_stream_reassembles

THINK_ANSWER = (
    "<think>\nThe user asks for 17 * 3. 17 * 3 = 51, and 51 < 60 so the\n"
    "tag </thin-looking text above must stay.\n</think>\n\nThe answer is **51**."
)
NO_THINK = "Sure! 17 × 3 = 51."
STRAY_CLOSE = "Answer first </think> then text."

# (id, start_in_reasoning, text, expected)
CASES: list[tuple[str, bool, str, ParsedMessage]] = [
    (
        "think-then-answer",
        False,
        THINK_ANSWER,
        ParsedMessage(
            content="The answer is **51**.",
            reasoning_content=(
                "The user asks for 17 * 3. 17 * 3 = 51, and 51 < 60 so the\n"
                "tag </thin-looking text above must stay."
            ),
        ),
    ),
    ("no-think-block", False, NO_THINK, ParsedMessage(content=NO_THINK)),
    (
        "unclosed-think-is-all-reasoning",
        False,
        "<think>\nLet me work through the cases: n = 0 ⇒",
        ParsedMessage(content="", reasoning_content="Let me work through the cases: n = 0 ⇒"),
    ),
    (
        "empty-think-block",
        False,
        "<think>\n\n</think>\n\nHi there! 👋",
        ParsedMessage(content="Hi there! 👋"),
    ),
    ("stray-close-tag-is-content", False, STRAY_CLOSE, ParsedMessage(content=STRAY_CLOSE)),
    (
        "think-tag-later-is-content",
        False,
        "Use <think> tags for reasoning.",
        ParsedMessage(content="Use <think> tags for reasoning."),
    ),
    (
        "opened-in-prompt",
        True,
        "Okay, is 91 prime? 91 = 7 * 13, so no.\n</think>\n\n91 is not prime: 7 × 13.",
        ParsedMessage(
            content="91 is not prime: 7 × 13.",
            reasoning_content="Okay, is 91 prime? 91 = 7 * 13, so no.",
        ),
    ),
    (
        "opened-in-prompt-and-repeated",
        True,
        "<think>\nShort one.\n</think>\nDone.",
        ParsedMessage(content="Done.", reasoning_content="Short one."),
    ),
    (
        "opened-in-prompt-never-closed",
        True,
        "Still thinking about </thin",
        ParsedMessage(content="", reasoning_content="Still thinking about </thin"),
    ),
    ("empty-output", False, "", ParsedMessage(content="")),
]
IDS = [case[0] for case in CASES]
TRIPLES = [case[1:] for case in CASES]

QWEN3_CALL = (
    "<think>\nThe user wants the weather. I could write "
    '<tool_call>{"name": "draft", "arguments": {}}</tool_call> but first think.\n'
    "I'll call get_weather for Paris.\n</think>\n\n"
    "<tool_call>\n"
    '{"name": "get_weather", "arguments": {"city": "Paris"}}\n'
    "</tool_call>"
)
TOOL_CASES: list[tuple[str, bool, str, ParsedMessage]] = [
    (
        "qwen3-think-then-call",
        False,
        QWEN3_CALL,
        ParsedMessage(
            content=None,
            tool_calls=[ToolCall("get_weather", '{"city": "Paris"}')],
            reasoning_content=(
                "The user wants the weather. I could write "
                '<tool_call>{"name": "draft", "arguments": {}}</tool_call> but first think.\n'
                "I'll call get_weather for Paris."
            ),
        ),
    ),
    (
        "opened-in-prompt-answer-and-call",
        True,
        "Need the time.</think>Let me check.\n"
        '<tool_call>\n{"name": "get_time", "arguments": {"tz": "UTC"}}\n</tool_call>',
        ParsedMessage(
            content="Let me check.",
            tool_calls=[ToolCall("get_time", '{"tz": "UTC"}')],
            reasoning_content="Need the time.",
        ),
    ),
    (
        "no-reasoning-no-calls",
        False,
        "Just an answer.",
        ParsedMessage(content="Just an answer."),
    ),
]
TOOL_IDS = [case[0] for case in TOOL_CASES]
TOOL_TRIPLES = [case[1:] for case in TOOL_CASES]


@pytest.mark.parametrize(("start", "text", "expected"), TRIPLES, ids=IDS)
def test_parse_golden(start: bool, text: str, expected: ParsedMessage) -> None:
    check_parse_golden(partial(ReasoningParser, start), text, expected, check_ids=False)


@pytest.mark.parametrize(("start", "text", "expected"), TRIPLES, ids=IDS)
def test_stream_reassembles_to_parse(start: bool, text: str, expected: ParsedMessage) -> None:
    check_stream_reassembles(partial(ReasoningParser, start), text, expected, check_ids=False)


def with_tools(start_in_reasoning: bool) -> ReasoningToolParser:
    return ReasoningToolParser(HermesParser(), start_in_reasoning)


@pytest.mark.parametrize(("start", "text", "expected"), TOOL_TRIPLES, ids=TOOL_IDS)
def test_parse_with_tools_golden(start: bool, text: str, expected: ParsedMessage) -> None:
    check_parse_golden(partial(with_tools, start), text, expected, check_ids=False)


@pytest.mark.parametrize(("start", "text", "expected"), TOOL_TRIPLES, ids=TOOL_IDS)
def test_stream_with_tools_reassembles(start: bool, text: str, expected: ParsedMessage) -> None:
    check_stream_reassembles(partial(with_tools, start), text, expected, check_ids=False)


def test_reasoning_streams_before_the_block_closes() -> None:
    parser = ReasoningParser()
    assert parser.feed("<think>\nStep one") == [ReasoningDelta("Step one")]
    assert parser.feed(". </thi") == [ReasoningDelta(".")]
    assert parser.feed("nk>\nAnswer") == [ContentDelta("Answer")]
    assert parser.finish() == []


def test_partial_open_tag_is_held_back() -> None:
    parser = ReasoningParser()
    assert parser.feed("<thi") == []
    assert parser.feed("s is not a tag") == [ContentDelta("<this is not a tag")]


@pytest.mark.parametrize(
    ("prompt", "opens"),
    [
        ("<｜User｜>Is 91 prime?<｜Assistant｜><think>\n", True),
        ("<|im_start|>assistant\n<think>\n\n</think>\n\n", False),
        ("<|im_start|>assistant\n", False),
        ("<|im_start|>user\nWhat does <think> do?<|im_end|>\n<|im_start|>assistant\n", False),
    ],
)
def test_prompt_opens_reasoning(prompt: str, opens: bool) -> None:
    assert prompt_opens_reasoning(prompt) is opens

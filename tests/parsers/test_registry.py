import pytest

from lmserve.parsers import (
    ParsedMessage,
    ReasoningToolParser,
    ToolCall,
    family_for_template,
    message_parser_for_template,
    parser_for_template,
    reasoning_for_template,
)
from lmserve.parsers.generic import GenericParser
from lmserve.parsers.hermes import HermesParser
from lmserve.parsers.llama3 import Llama3Parser
from lmserve.parsers.mistral import MistralParser

# Short excerpts in the style of the chat templates these model families ship.
QWEN25 = (
    "{%- if tools %}{{- '<|im_start|>system\\n' }}# Tools\\n<tools>{%- for tool in tools %}"
    "{{- tool | tojson }}{%- endfor %}</tools>\\nFor each function call, return a json object "
    "within <tool_call></tool_call> XML tags{%- endif %}"
)
QWEN3 = QWEN25 + (
    "{%- if '</think>' in content %}{%- set content = content.split('</think>')[-1] %}"
    "{%- endif %}{%- if enable_thinking is defined and enable_thinking is false %}"
    "{{- '<think>\\n\\n</think>\\n\\n' }}{%- endif %}"
)
LLAMA31 = (
    "{%- if builtin_tools is defined or tools is not none %}"
    "{{- 'Environment: ipython\\n' }}{%- endif %}"
    "{%- if tool_call.name in builtin_tools %}{{- '<|python_tag|>' + tool_call.name }}"
    "{%- endif %}"
)
LLAMA32 = (
    '{%- elif message.role == "tool" or message.role == "ipython" %}'
    "{{- '<|start_header_id|>ipython<|end_header_id|>\\n\\n' }}"
)
MISTRAL = (
    "{%- elif message.tool_calls is defined %}{{- '[TOOL_CALLS][' }}"
    "{%- for tool_call in message.tool_calls %}{{- tool_call | tojson }}{%- endfor %}"
)
CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
)
DEEPSEEK_R1 = (
    "{% if '</think>' in content %}{% set content = content.split('</think>')[-1] %}"
    "{% endif %}{% if add_generation_prompt %}{{'<｜Assistant｜><think>\\n'}}{% endif %}"
)


@pytest.mark.parametrize(
    ("template", "family", "parser_type", "reasoning"),
    [
        (QWEN25, "hermes", HermesParser, False),
        (QWEN3, "hermes", HermesParser, True),
        (LLAMA31, "llama3", Llama3Parser, False),
        (LLAMA32, "llama3", Llama3Parser, False),
        (MISTRAL, "mistral", MistralParser, False),
        (CHATML, "generic", GenericParser, False),
        (DEEPSEEK_R1, "generic", GenericParser, True),
        ("", "generic", GenericParser, False),
        (None, "generic", GenericParser, False),
    ],
    ids=["qwen2.5", "qwen3", "llama3.1", "llama3.2", "mistral", "chatml", "r1", "empty", "none"],
)
def test_template_detection(
    template: str | None, family: str, parser_type: type, reasoning: bool
) -> None:
    assert family_for_template(template) == family
    assert type(parser_for_template(template)) is parser_type
    assert reasoning_for_template(template) is reasoning


def test_each_call_returns_a_fresh_parser() -> None:
    first = parser_for_template(QWEN25)
    second = parser_for_template(QWEN25)
    assert first is not second
    first.feed("Hello <tool_")
    assert second.feed("Hi") and second.finish() == []


def test_message_parser_without_reasoning_is_the_tool_parser() -> None:
    assert type(message_parser_for_template(MISTRAL)) is MistralParser


def test_message_parser_for_reasoning_template() -> None:
    parser = message_parser_for_template(QWEN3, prompt="<|im_start|>assistant\n")
    assert isinstance(parser, ReasoningToolParser)
    text = (
        "<think>\nCall the tool.\n</think>\n\n"
        '<tool_call>\n{"name": "get_time", "arguments": {}}\n</tool_call>'
    )
    assert parser.parse(text) == ParsedMessage(
        content=None,
        tool_calls=[ToolCall("get_time", "{}")],
        reasoning_content="Call the tool.",
    )


def test_message_parser_follows_a_prompt_that_opens_reasoning() -> None:
    text = "So the answer is 4.\n</think>\n\n2 + 2 = 4."
    expected = ParsedMessage(content="2 + 2 = 4.", reasoning_content="So the answer is 4.")
    opened = message_parser_for_template(DEEPSEEK_R1, prompt="<｜Assistant｜><think>\n")
    assert opened.parse(text) == expected
    closed = message_parser_for_template(DEEPSEEK_R1, prompt="<｜Assistant｜>")
    assert closed.parse(text) == ParsedMessage(content=text)

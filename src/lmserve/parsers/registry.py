"""Chooses output parsers from a model's Jinja chat template."""

from collections.abc import Callable

from lmserve.parsers.base import ToolCallParser
from lmserve.parsers.generic import GenericParser
from lmserve.parsers.hermes import HermesParser
from lmserve.parsers.llama3 import Llama3Parser
from lmserve.parsers.mistral import MistralParser
from lmserve.parsers.reasoning import ReasoningToolParser, prompt_opens_reasoning

PARSERS: dict[str, Callable[..., ToolCallParser]] = {
    "hermes": HermesParser,
    "llama3": Llama3Parser,
    "mistral": MistralParser,
    "generic": GenericParser,
}


def family_for_template(chat_template: str | None) -> str:
    """Name of the tool call format a chat template teaches its model."""
    template = chat_template or ""
    # Hermes comes first: Hermes fine-tunes of Llama keep Llama's special tokens around.
    if "<tool_call>" in template:
        return "hermes"
    if "[TOOL_CALLS]" in template:
        return "mistral"
    if "<|python_tag|>" in template or "ipython" in template:
        return "llama3"
    return "generic"


def parser_for_template(chat_template: str | None) -> ToolCallParser:
    """A fresh tool call parser for output of a model with this chat template."""
    return PARSERS[family_for_template(chat_template)]()


def reasoning_for_template(chat_template: str | None) -> bool:
    """Whether the model's output may start with a `<think>` reasoning block."""
    return "<think>" in (chat_template or "")


def message_parser_for_template(
    chat_template: str | None, prompt: str | None = None
) -> ToolCallParser:
    """A fresh parser for whole assistant messages: reasoning (if any) and tool calls.

    `prompt` is the rendered prompt; when it ends inside an open think block the
    output starts in the reasoning.
    """
    tools = parser_for_template(chat_template)
    if not reasoning_for_template(chat_template):
        return tools
    opens = prompt is not None and prompt_opens_reasoning(prompt)
    return ReasoningToolParser(tools, start_in_reasoning=opens)

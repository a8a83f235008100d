"""Parsers turning generated text into OpenAI chat message parts."""

from lmserve.parsers.base import (
    ContentDelta,
    ParsedMessage,
    ReasoningDelta,
    StreamEvent,
    ToolCall,
    ToolCallArgsDelta,
    ToolCallParser,
    ToolCallStart,
    assemble_events,
)
from lmserve.parsers.reasoning import (
    ReasoningParser,
    ReasoningToolParser,
    prompt_opens_reasoning,
)
from lmserve.parsers.registry import (
    family_for_template,
    message_parser_for_template,
    parser_for_template,
    reasoning_for_template,
)

__all__ = [
    "ContentDelta",
    "ParsedMessage",
    "ReasoningDelta",
    "ReasoningParser",
    "ReasoningToolParser",
    "StreamEvent",
    "ToolCall",
    "ToolCallArgsDelta",
    "ToolCallParser",
    "ToolCallStart",
    "assemble_events",
    "family_for_template",
    "message_parser_for_template",
    "parser_for_template",
    "prompt_opens_reasoning",
    "reasoning_for_template",
]

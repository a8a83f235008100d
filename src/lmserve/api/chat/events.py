"""The events a chat run yields, beside the parsers' content, reasoning and tool calls."""

from __future__ import annotations

from dataclasses import dataclass

from lmserve.engine import Done, PromptProgress
from lmserve.engine.request import TokenLogprob
from lmserve.parsers import ContentDelta, ReasoningDelta, ToolCallArgsDelta, ToolCallStart


@dataclass(frozen=True)
class LogprobsDelta:
    entries: tuple[TokenLogprob, ...]


@dataclass(frozen=True)
class Finish:
    reason: str  # stop | length | tool_calls
    done: Done


# PromptProgress only when the spec asks for it (report_progress).
ChatEvent = ContentDelta | ReasoningDelta | ToolCallStart | ToolCallArgsDelta | \
    LogprobsDelta | Finish | PromptProgress


class LogprobsHold:
    """Log-probabilities arrive just before the text they produced: each choice's are
    held here until its next event, which carries them."""

    def __init__(self) -> None:
        self._held: dict[int, list[TokenLogprob]] = {}

    def take(self, index: int, event: ChatEvent) -> list[TokenLogprob] | None:
        """None when the event was log-probabilities (now held), else those it carries."""
        if isinstance(event, LogprobsDelta):
            self._held.setdefault(index, []).extend(event.entries)
            return None
        return self._held.pop(index, [])

"""Token counts of a finished request, before each family names them its own way."""

from __future__ import annotations

from dataclasses import dataclass

from lmserve.engine import Done


@dataclass(frozen=True)
class TokenUsage:
    prompt: int
    completion: int
    cached: int

    @classmethod
    def of(cls, dones: list[Done], *, shared_prompt: bool) -> TokenUsage:
        """The counts of all choices; n choices of one prompt count it once."""
        if not dones:
            return cls(0, 0, 0)
        completion = sum(d.completion_tokens for d in dones)
        if shared_prompt:
            return cls(dones[0].prompt_tokens, completion, dones[0].cached_tokens)
        return cls(sum(d.prompt_tokens for d in dones), completion,
                   sum(d.cached_tokens for d in dones))

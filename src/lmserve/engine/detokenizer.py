"""Turns a stream of token bytes into safe text deltas.

Two concerns, applied in order:
- UTF-8: a character split across tokens is held until its last byte arrives; if the
  output ends first (max_tokens), its partial bytes are dropped, not shown as U+FFFD.
- Stop strings: text that could be the start of a stop string is held until it is
  known not to be one; a matched stop string ends the output and is never emitted.
"""

from __future__ import annotations

import codecs


class StopMatcher:
    def __init__(self, stops: list[str]) -> None:
        self.stops = [s for s in stops if s]
        self.matched: str | None = None  # the stop string that ended the output
        self._held = ""

    def push(self, text: str) -> tuple[str, bool]:
        """Returns (text safe to emit, whether a stop string was hit)."""
        if not self.stops:
            return text, False
        buf = self._held + text
        found = [(i, s) for s in self.stops if (i := buf.find(s)) >= 0]
        if found:
            hit, self.matched = min(found)
            self._held = ""
            return buf[:hit], True
        keep = self._longest_partial_stop(buf)
        self._held = buf[len(buf) - keep:] if keep else ""
        return buf[: len(buf) - keep], False

    def flush(self) -> str:
        held, self._held = self._held, ""
        return held

    def _longest_partial_stop(self, buf: str) -> int:
        """Length of the longest suffix of buf that is a proper prefix of a stop string."""
        best = 0
        for stop in self.stops:
            for n in range(min(len(stop) - 1, len(buf)), best, -1):
                if buf.endswith(stop[:n]):
                    best = n
                    break
        return best


class Detokenizer:
    def __init__(self, stops: list[str]) -> None:
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._stops = StopMatcher(stops)

    def push(self, piece: bytes) -> tuple[str, bool]:
        return self._stops.push(self._utf8.decode(piece))

    @property
    def matched_stop(self) -> str | None:
        return self._stops.matched

    def flush(self) -> str:
        """Everything still held at the end of generation."""
        self._utf8.reset()  # it holds only the start of a character cut off by the end
        return self._stops.flush()

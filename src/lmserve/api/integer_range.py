"""GBNF for the integers between two bounds (JSON Schema's minimum / maximum on an
integer): the range is cut into runs of digit classes, as one writes a regex for it."""

from __future__ import annotations

# Digits an unbounded side may still take, as llama.cpp's own integer rule allows.
_MAX_DIGITS = 16


def integer_range_rule(low: int | None, high: int | None) -> str:
    """A GBNF expression admitting exactly the integers in [low, high] (None: unbounded)."""
    alternatives = []
    if low is None or low < 0:  # the negative part, as "-" and a magnitude
        magnitude_low = 1 if high is None or high >= 0 else -high
        alternatives += [f'"-" {a}' for a in _at_least(magnitude_low, None if low is None
                                                          else -low)]
    if high is None or high >= 0:
        alternatives += _at_least(max(low or 0, 0), high)
    if not alternatives:
        raise ValueError(f"no integer lies between {low} and {high}")
    return "(" + " | ".join(alternatives) + ")"


def _at_least(low: int, high: int | None) -> list[str]:
    """Digit sequences for the non-negative integers in [low, high]."""
    if high is None:
        width = len(str(low))
        longer = f"[1-9] [0-9]{{{width},{_MAX_DIGITS - 1}}}"
        return [*_at_least(low, 10 ** width - 1), longer] if width < _MAX_DIGITS else \
            _at_least(low, 10 ** width - 1)
    out: list[str] = []
    while low <= high:
        top = min(high, 10 ** len(str(low)) - 1)
        out += [" ".join(_class(a, b) for a, b in run) for run in _same_width(str(low), str(top))]
        low = top + 1
    return out


def _same_width(low: str, high: str) -> list[list[tuple[int, int]]]:
    """Runs of per-digit ranges covering [low, high], two numbers of the same width."""
    if low == high:
        return [[(int(c), int(c)) for c in low]]
    common = 0
    while low[common] == high[common]:
        common += 1
    prefix = [(int(c), int(c)) for c in low[:common]]
    low, high = low[common:], high[common:]
    first, last, rest = int(low[0]), int(high[0]), len(low) - 1
    if rest == 0:
        return [prefix + [(first, last)]]
    runs: list[list[tuple[int, int]]] = []
    start = first
    if low[1:] != "0" * rest:  # the first leading digit covers only the top of its span
        runs += _same_width(low, low[0] + "9" * rest)
        start = first + 1
    end = last
    tail: list[list[tuple[int, int]]] = []
    if high[1:] != "9" * rest:  # and the last one only the bottom of its span
        tail = _same_width(high[0] + "0" * rest, high)
        end = last - 1
    if start <= end:
        runs.append([(start, end)] + [(0, 9)] * rest)
    return [prefix + run for run in runs + tail]


def _class(a: int, b: int) -> str:
    return f'"{a}"' if a == b else f"[{a}-{b}]"

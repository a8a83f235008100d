"""Tool calls streamed while they are generated: `{"name": "f", "arguments": {...`
announces the call, then its arguments go out piece by piece.

The arguments are re-serialised as they arrive, in exactly the form `json.dumps(...,
ensure_ascii=False)` gives, so a streamed call reads the same as one parsed whole.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from enum import Enum, auto

_WS = " \t\r\n"
# A complete JSON string, and a string that may still be growing.
_STRING = re.compile(r'"(?:[^"\\\x00-\x1f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"')
_OPEN_STRING = re.compile(r'"(?:[^"\\\x00-\x1f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*'
                          r'(?:\\u?[0-9a-fA-F]{0,3})?')
_PLAIN = re.compile(r'[^"\\\x00-\x1f]+')
_SCALAR = re.compile(r"[-+0-9.eEa-zA-Z]+")
_ARGUMENT_KEYS = ("arguments", "parameters")


class Status(Enum):
    MORE = auto()  # needs more text
    DONE = auto()  # the value (or call) is complete
    ERROR = auto()  # the text is not what was expected


class _Expect(Enum):
    VALUE = auto()
    VALUE_OR_CLOSE = auto()
    KEY = auto()
    KEY_OR_CLOSE = auto()
    COLON = auto()
    COMMA_OR_CLOSE = auto()


class JSONRewriter:
    """Reads one JSON value in pieces and writes it back in `json.dumps` form.

    `feed` consumes what it can decide (a token cut by the end of a piece waits for the
    next one) and returns the output, how much it consumed, and its status.
    """

    def __init__(self) -> None:
        self._stack: list[str] = []
        self._expect = _Expect.VALUE
        self._in_string = False
        self._string_is_key = False

    def feed(self, text: str) -> tuple[str, int, Status]:
        out: list[str] = []
        pos = 0
        while pos < len(text):
            if self._in_string:
                pos, valid = self._string_part(text, pos, out)
                if not valid:
                    return "".join(out), pos, Status.ERROR
                if self._in_string:
                    return "".join(out), pos, Status.MORE
                if not self._stack and not self._string_is_key:
                    return "".join(out), pos, Status.DONE
                continue
            c = text[pos]
            if c in _WS:
                pos += 1
                continue
            step = self._token(text, pos, out)
            if step is None:
                return "".join(out), pos, Status.ERROR
            if step == pos:
                return "".join(out), pos, Status.MORE
            pos = step
            if not self._stack and self._expect is _Expect.COMMA_OR_CLOSE:
                return "".join(out), pos, Status.DONE
        return "".join(out), pos, Status.MORE

    def _token(self, text: str, pos: int, out: list[str]) -> int | None:
        """Consume the token at `pos`: its end, `pos` if it is cut off, None if invalid."""
        c, expect = text[pos], self._expect
        closes = {"}": "{", "]": "["}
        if c in closes and (
            expect is _Expect.COMMA_OR_CLOSE
            or (expect is _Expect.KEY_OR_CLOSE and c == "}")
            or (expect is _Expect.VALUE_OR_CLOSE and c == "]")
        ):
            if not self._stack or self._stack.pop() != closes[c]:
                return None
            out.append(c)
            self._expect = _Expect.COMMA_OR_CLOSE
            return pos + 1
        if expect is _Expect.COMMA_OR_CLOSE and c == ",":
            out.append(", ")
            self._expect = _Expect.KEY if self._stack[-1] == "{" else _Expect.VALUE
            return pos + 1
        if expect is _Expect.COLON and c == ":":
            out.append(": ")
            self._expect = _Expect.VALUE
            return pos + 1
        if expect in (_Expect.KEY, _Expect.KEY_OR_CLOSE) and c == '"':
            self._open_string(out, key=True)
            return pos + 1
        if expect not in (_Expect.VALUE, _Expect.VALUE_OR_CLOSE):
            return None
        if c in "{[":
            self._stack.append(c)
            out.append(c)
            self._expect = _Expect.KEY_OR_CLOSE if c == "{" else _Expect.VALUE_OR_CLOSE
            return pos + 1
        if c == '"':
            self._open_string(out, key=False)
            return pos + 1
        scalar = _SCALAR.match(text, pos)
        if scalar is None:
            return None
        if scalar.end() == len(text):
            return pos  # a number may go on in the next piece
        try:
            out.append(json.dumps(json.loads(scalar.group())))
        except ValueError:
            return None
        self._expect = _Expect.COMMA_OR_CLOSE
        return scalar.end()

    def _open_string(self, out: list[str], key: bool) -> None:
        out.append('"')
        self._in_string = True
        self._string_is_key = key

    def _string_part(self, text: str, pos: int, out: list[str]) -> tuple[int, bool]:
        """Consume string characters from `pos`; an escape cut off waits. Returns where
        it stopped, and False at a character JSON does not allow there."""
        while pos < len(text):
            plain = _PLAIN.match(text, pos)
            if plain:
                out.append(plain.group())
                pos = plain.end()
                continue
            c = text[pos]
            if c == '"':
                out.append('"')
                self._in_string = False
                self._expect = _Expect.COLON if self._string_is_key else _Expect.COMMA_OR_CLOSE
                return pos + 1, True
            if c != "\\":  # a raw control character
                return pos, False
            try:
                escape = _escape_at(text, pos)
            except ValueError:  # an escape JSON does not have, such as \x
                return pos, False
            if escape is None:
                return pos, True
            decoded, end = escape
            out.append(json.dumps(decoded, ensure_ascii=False)[1:-1])
            pos = end
        return pos, True


def _escape_at(text: str, pos: int) -> tuple[str, int] | None:
    """The character escaped at `pos` and where the escape ends; None if cut off. A high
    surrogate waits for its low half, as `json.loads` joins the two."""
    if pos + 1 >= len(text):
        return None
    if text[pos + 1] != "u":
        return json.loads(f'"{text[pos:pos + 2]}"'), pos + 2
    if pos + 6 > len(text):
        return None
    unit = text[pos:pos + 6]
    if 0xD800 <= int(unit[2:], 16) <= 0xDBFF:
        pair = text[pos:pos + 12]
        if len(pair) < 12 and re.fullmatch(r"(?:\\(?:u[0-9a-fA-F]{0,3})?)?", text[pos + 6:]):
            return None
        if re.fullmatch(r"\\u[dD][c-fC-F][0-9a-fA-F]{2}", pair[6:]):
            return json.loads(f'"{pair}"'), pos + 12
    return json.loads(f'"{unit}"'), pos + 6


def call_head(text: str) -> tuple[str, int] | Status:
    """Read `{"name": "...", "arguments": ` at the start of `text` (also "parameters").

    Returns the name and where the arguments value starts, Status.MORE while the text
    could still become such a head, Status.ERROR once it cannot.
    """
    pos = 0
    name = ""
    for part in ("{", ("name",), ":", None, ",", _ARGUMENT_KEYS, ":", "{"):
        while pos < len(text) and text[pos] in _WS:
            pos += 1
        if pos == len(text):
            return Status.MORE
        if isinstance(part, str):  # punctuation
            if text[pos] != part:
                return Status.ERROR
            pos += 1
            continue
        string = _STRING.match(text, pos)
        if string is None:
            opened = _OPEN_STRING.match(text, pos)
            return Status.MORE if opened and opened.end() == len(text) else Status.ERROR
        value = json.loads(string.group()).strip()
        if (part is None and not value) or (part is not None and value not in part):
            return Status.ERROR
        name = value if part is None else name
        pos = string.end()
    return name, pos - 1


def calls_start(text: str) -> Status:
    """Whether `text` starts with a call head, or a list whose first item is one:
    Status.DONE if so, Status.MORE while it may still become one, else Status.ERROR."""
    if text.startswith("["):
        text = text[1:].lstrip(_WS)
    head = call_head(text)
    return head if isinstance(head, Status) else Status.DONE


class CallStream:
    """Reads one call object from a growing text and streams it.

    `step(text, final, emit)` reads the unconsumed text, calls `emit("start", name)` once
    the head is read and then `emit("arguments", piece)`, and returns how much of `text`
    it consumed and its status. Until the head is read nothing is consumed, and
    Status.ERROR means "not a streamable call": the caller reads the text its own way.
    Once started, Status.ERROR means the call ended early (the rest is not consumed).
    """

    def __init__(self, name: str | None = None) -> None:
        # Given a name (Mistral's `name[ARGS]{...}`), the text is the arguments alone.
        self.name = name
        self.started = False
        self._bare = name is not None
        self._rewriter = JSONRewriter()
        self._arguments_done = False

    def step(self, text: str, final: bool,
             emit: Callable[[str, str], None]) -> tuple[int, Status]:
        pos = 0
        if not self.started:
            if not self._bare:
                head = call_head(text)
                if isinstance(head, Status):
                    return 0, Status.ERROR if final else head
                self.name, pos = head
            self.started = True
            emit("start", self.name or "")
        if not self._arguments_done:
            out, used, status = self._rewriter.feed(text[pos:])
            if out:
                emit("arguments", out)
            pos += used
            if status is not Status.DONE:
                return pos, Status.ERROR if final else status
            self._arguments_done = True
            if self._bare:
                return pos, Status.DONE
        return self._tail(text, pos, final)

    def _tail(self, text: str, pos: int, final: bool) -> tuple[int, Status]:
        """After the arguments: the call object's closing brace, maybe after more keys."""
        rest = text[pos:].lstrip(_WS)
        skipped = len(text) - pos - len(rest)
        if not rest:
            return pos, Status.ERROR if final else Status.MORE
        if rest[0] == "}":
            return pos + skipped + 1, Status.DONE
        if rest[0] != ",":
            return pos, Status.ERROR
        try:
            _, end = json.JSONDecoder().raw_decode("{" + rest[1:])
        except ValueError:
            return pos, Status.ERROR if final else Status.MORE
        return pos + skipped + end, Status.DONE

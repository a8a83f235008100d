"""JSON schemas turned into GBNF grammars for constrained output (response_format and
forced tool calls).

llama-cpp-python's schema converter does the bulk of the work. Around it, lmserve
- rewrites what the converter misreads: `type` lists (it would drop their `enum`), a
  one-item `allOf`, `format: email/uri`, regex shorthands such as `\\d`, `$ref: "#"`;
- keeps JSON strings valid: no raw control character, quote or backslash except as an
  escape, also where a `pattern` has `.` or a negated class;
- refuses, with a 400 naming it, every keyword the grammar would otherwise ignore;
- hoists each tool's `$defs` to the root of the call schema, so refs keep resolving.
"""

from __future__ import annotations

import math
import re
from typing import Any

from llama_cpp.llama_grammar import (
    PRIMITIVE_RULES,
    RESERVED_NAMES,
    BuiltinRule,
    SchemaConverter,
)

from lmserve.api.errors import APIError
from lmserve.api.integer_range import integer_range_rule

# A JSON string character: anything but a quote, a backslash or a control character
# (U+0000-U+001F), which may only appear escaped.
_JSON_CHAR = BuiltinRule(
    r'[^"\\\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F])',
    [])
_PATTERN_DOT = r'[^"\\\x00-\x1F]'
# In a negated class of a pattern, the characters a JSON string cannot hold raw.
_NEGATED_CLASS = r'[^"\\\x00-\x1F'
_LITERAL_OR_NEGATED_CLASS = re.compile(r'"(?:[^"\\]|\\.)*"|\[\^')

# Bounded, so that a generated address always ends.
_FORMAT_PATTERNS = {
    "email": r"^[A-Za-z0-9._%+-]{1,32}@[A-Za-z0-9-]{1,32}(\.[A-Za-z0-9-]{1,16}){1,3}$",
    "uri": r"^[a-z]{1,10}://[A-Za-z0-9.-]{1,64}(/[A-Za-z0-9._~%!$&'()*+,;=:@/?#-]{0,100})?$",
}
_FORMATS = {"date", "time", "date-time", "uuid", "uuid1", "uuid2", "uuid3", "uuid4",
            "uuid5", *_FORMAT_PATTERNS}
_REGEX_SHORTHANDS = {"d": "0-9", "w": "A-Za-z0-9_", "s": " "}

# Keywords the converter would silently ignore: refused rather than promised.
_UNSUPPORTED_KEYWORDS = {
    "not", "if", "then", "else", "patternProperties", "dependentSchemas",
    "dependentRequired", "contains", "minContains", "maxContains", "uniqueItems",
    "propertyNames", "unevaluatedProperties", "unevaluatedItems", "$dynamicRef",
    "minProperties", "maxProperties", "multipleOf",
}
_NAMED_SCHEMAS = {"properties", "$defs", "definitions"}  # names -> schemas
# Keys that say nothing of the value's form, and keys whose values are data, not schemas.
_NOTES = {"default", "examples", "description", "title", "$comment", "format"}
_DATA = {"enum", "const", *_NOTES}
_TYPES = {"string", "number", "integer", "boolean", "array", "object", "null"}


def schema_grammar(schema: dict[str, Any], *, param: str = "response_format") -> str:
    """GBNF for `schema`; a schema the grammar cannot enforce is a 400 on `param`."""
    body, defs = _hoisted(schema, "schema")
    return _convert({"$defs": defs, **body}, [], param)


def tool_call_grammar(functions: list[dict[str, Any]], args_key: str,
                      markers: tuple[str, str] = ("", "")) -> str:
    """GBNF for one `{"name": ..., args_key: {...}}` call of one of `functions`, between
    the family's markers (GBNF literals, or empty)."""
    defs: dict[str, Any] = {}
    variants = []
    for i, fn in enumerate(functions):
        params, fn_defs = _hoisted(fn.get("parameters") or {"type": "object"}, f"tool{i}")
        defs.update(fn_defs)
        variants.append({
            "type": "object",
            "properties": {"name": {"const": fn["name"]}, args_key: params},
            "required": ["name", args_key],
        })
    call = variants[0] if len(variants) == 1 else {"anyOf": variants}
    body = _convert({"$defs": defs, **call}, ["name", args_key], "tools")
    # Rename the converter's root by line so the call can be wrapped by the markers.
    body = re.sub(r"(?m)^root ::=", "tool-call-object ::=", body, count=1)
    wrapped = " ".join(filter(None, [markers[0], "tool-call-object", markers[1]]))
    return f"root ::= {wrapped}\n{body}"


def _convert(schema: dict[str, Any], prop_order: list[str], param: str) -> str:
    problem = _unsupported(schema)
    if problem:
        raise APIError(400, f"The JSON schema keyword '{problem}' in '{param}' is not "
                            "supported for constrained output.", param=param)
    converter = _JSONSafeConverter(prop_order={k: i for i, k in enumerate(prop_order)})
    try:
        # Refs are all local once hoisted; the converter's own resolver would miss those
        # inside a definition that the root itself refers to.
        converter._refs = _local_refs(schema, schema)
        converter.visit(schema, "")
        return converter.format_grammar()
    except (ValueError, AssertionError, KeyError, TypeError, RecursionError) as exc:
        raise APIError(400, f"The JSON schema in '{param}' is not supported for "
                            f"constrained output: {exc}", param=param) from exc


class _JSONSafeConverter(SchemaConverter):
    """llama-cpp-python's converter with valid JSON strings and lmserve's rewrites."""

    def __init__(self, prop_order: dict[str, int]) -> None:
        super().__init__(prop_order=prop_order, allow_fetch=False, dotall=False,
                         raw_pattern=False)
        self._in_pattern = False

    def visit(self, schema: dict[str, Any], name: str) -> str:
        schema = _rewritten(schema)
        if name and not set(schema) - _NOTES:  # {}: any JSON value at all
            return self._add_primitive("value", PRIMITIVE_RULES["value"])
        bounds = _integer_bounds(schema)
        if bounds is not None:
            rule_name = f"{name}-" if name in RESERVED_NAMES else name or "root"
            return self._add_rule(rule_name, f"{integer_range_rule(*bounds)} space")
        minimum = schema.get("minimum")
        if schema.get("type") == "number" and minimum in (0, 1):
            rule_name = f"{name}-" if name in RESERVED_NAMES else name or "root"
            return self._add_rule(rule_name, self._non_negative(minimum))
        return super().visit(schema, name)

    def _non_negative(self, minimum: int) -> str:
        """A number of at least 0 or 1: no sign, and no zero before the point for 1."""
        for part in ("integral-part", "decimal-part"):
            self._add_primitive(part, PRIMITIVE_RULES[part])
        whole = "[1-9] [0-9]*" if minimum == 1 else "integral-part"
        return f'{whole} ("." decimal-part)? space'

    def _add_primitive(self, name: str, rule: BuiltinRule) -> str:
        return super()._add_primitive(name, _JSON_CHAR if name == "char" else rule)

    def _add_rule(self, name: str, rule: str) -> str:
        if self._in_pattern:
            rule = _PATTERN_DOT if name == "dot" else _LITERAL_OR_NEGATED_CLASS.sub(
                lambda m: _NEGATED_CLASS if m.group(0) == "[^" else m.group(0), rule)
        return super()._add_rule(name, rule)

    def _visit_pattern(self, pattern: str, name: str) -> str:
        self._in_pattern = True
        try:
            return super()._visit_pattern(_anchored(_without_shorthands(pattern)), name)
        finally:
            self._in_pattern = False


def _rewritten(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema in the forms the converter reads correctly."""
    schema = dict(schema)
    all_of = schema.get("allOf")
    if isinstance(all_of, list) and len(all_of) == 1 and isinstance(all_of[0], dict):
        del schema["allOf"]
        schema = {**schema, **all_of[0]}
    if schema.get("format") in _FORMAT_PATTERNS:
        schema["pattern"] = _FORMAT_PATTERNS[schema.pop("format")]
    types = schema.get("type")
    if isinstance(types, list):
        if "enum" in schema or "const" in schema:
            del schema["type"]  # the values already say it all
        elif len(types) == 1:
            schema["type"] = types[0]
        else:
            rest = {k: v for k, v in schema.items() if k != "type"}
            schema = {"anyOf": [{**rest, "type": t} for t in types]}
    return schema


_BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")


def _integer_bounds(schema: dict[str, Any]) -> tuple[int | None, int | None] | None:
    """The inclusive integer range an integer schema's bounds give, None without bounds."""
    if schema.get("type") != "integer" or not _BOUNDS & schema.keys():
        return None
    low = [math.ceil(schema["minimum"])] if "minimum" in schema else []
    low += [math.floor(schema["exclusiveMinimum"]) + 1] if "exclusiveMinimum" in schema else []
    high = [math.floor(schema["maximum"])] if "maximum" in schema else []
    high += [math.ceil(schema["exclusiveMaximum"]) - 1] if "exclusiveMaximum" in schema else []
    return max(low, default=None), min(high, default=None)


def _without_shorthands(pattern: str) -> str:
    """`\\d`, `\\w`, `\\s` as classes, and other escaped punctuation as a class of one,
    which GBNF literals cannot express."""
    out, i, in_class = [], 0, False
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            nxt = pattern[i + 1]
            if nxt in _REGEX_SHORTHANDS:
                chars = _REGEX_SHORTHANDS[nxt]
                out.append(chars if in_class else f"[{chars}]")
            elif not nxt.isalnum() and not in_class and nxt not in "[]()|{}*+?":
                out.append(f"[{nxt}]" if nxt not in "\\^-" else f"[\\{nxt}]")
            else:
                out.append(c + nxt)
            i += 2
            continue
        in_class = (in_class or c == "[") and not (in_class and c == "]")
        out.append(c)
        i += 1
    return "".join(out)


def _anchored(pattern: str) -> str:
    """JSON Schema patterns match anywhere in the string; the converter wants ^...$."""
    head = pattern[1:] if pattern.startswith("^") else ".*" + pattern
    ends = head.endswith("$") and not head.endswith("\\$")
    return "^" + (head if ends else head + ".*$")


def _unsupported(node: Any) -> str | None:
    """The first keyword in the schema that the grammar would not enforce."""
    if isinstance(node, list):
        return next(filter(None, map(_unsupported, node)), None)
    if not isinstance(node, dict):
        return None
    types = node.get("type")
    for t in types if isinstance(types, list) else [types]:
        if t is not None and t not in _TYPES:
            return f"type: {t}"
    if "format" in node and node["format"] not in _FORMATS:
        return f"format: {node['format']}"
    # A pattern or a format decides the whole string: the converter drops the rest.
    if {"pattern", "format"} <= node.keys():
        return "format (with pattern)"
    if {"pattern", "format"} & node.keys() and {"minLength", "maxLength"} & node.keys():
        return "minLength/maxLength (with pattern or format)"
    # Integers take any bounds; numbers only a minimum of 0 or 1.
    kinds = set(types) - {"null"} if isinstance(types, list) else {types}
    for key in _BOUNDS if kinds != {"integer"} else ():
        if key in node and not (kinds == {"number"} and key == "minimum"
                                and node[key] in (0, 1)):
            return key
    ref = node.get("$ref")
    if isinstance(ref, str) and not ref.startswith("#"):
        return "$ref (remote)"
    for key, value in node.items():
        if key in _UNSUPPORTED_KEYWORDS:
            return key
        if key in _DATA:
            continue
        named = key in _NAMED_SCHEMAS and isinstance(value, dict)
        for child in value.values() if named else [value]:
            found = _unsupported(child)
            if found:
                return found
    return None


def _local_refs(root: dict[str, Any], node: Any) -> dict[str, Any]:
    """Every `#/...` ref in the schema, mapped to the subschema it points to."""
    refs: dict[str, Any] = {}
    if isinstance(node, list):
        for item in node:
            refs.update(_local_refs(root, item))
    elif isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/"):
            target: Any = root
            for part in ref[2:].split("/"):
                target = target[part.replace("~1", "/").replace("~0", "~")]
            refs[ref] = target
        for key, value in node.items():
            if key in _NAMED_SCHEMAS and isinstance(value, dict):
                value = list(value.values())
            if key not in _DATA:
                refs.update(_local_refs(root, value))
    return refs


def _hoisted(schema: dict[str, Any], prefix: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The schema as a ref to `#/$defs/<prefix>`, with its own definitions beside it
    under `<prefix>-<name>`: refs resolve wherever the schema is placed."""
    local = {**schema.get("$defs", {}), **schema.get("definitions", {})}
    body = {k: v for k, v in schema.items() if k not in ("$defs", "definitions")}

    def rename(ref: str) -> str:
        if ref == "#":
            return f"#/$defs/{prefix}"
        for root in ("#/$defs/", "#/definitions/"):
            if ref.startswith(root):
                return f"#/$defs/{prefix}-{ref[len(root):]}"
        if ref.startswith("#/"):
            return f"#/$defs/{prefix}{ref[1:]}"
        return ref

    defs = {f"{prefix}-{name}": _with_refs(d, rename) for name, d in local.items()}
    defs[prefix] = _with_refs(body, rename)
    return {"$ref": f"#/$defs/{prefix}"}, defs


def _with_refs(node: Any, rename: Any) -> Any:
    """A copy of the schema with every `$ref` renamed; data keywords are left alone."""
    if isinstance(node, list):
        return [_with_refs(x, rename) for x in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key == "$ref" and isinstance(value, str):
            out[key] = rename(value)
        elif key in _DATA:
            out[key] = value
        elif key in _NAMED_SCHEMAS and isinstance(value, dict):
            out[key] = {k: _with_refs(v, rename) for k, v in value.items()}
        else:
            out[key] = _with_refs(value, rename)
    return out

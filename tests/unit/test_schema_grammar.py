"""JSON schema to GBNF: valid JSON strings, keywords enforced or refused, tool schemas with
their own definitions. Each grammar is also parsed by llama.cpp itself."""

import re

import llama_cpp as L
import pytest

from lmserve.api.errors import APIError
from lmserve.api.integer_range import integer_range_rule
from lmserve.api.schema_grammar import schema_grammar, tool_call_grammar
from lmserve.engine.llama import LlamaModel
from lmserve.models.bundled import bundled_model_path

ADDRESS_TOOL = {"name": "locate", "parameters": {
    "$defs": {"A": {"type": "object", "properties": {"city": {"type": "string"}}}},
    "type": "object", "properties": {"addr": {"$ref": "#/$defs/A"}}}}
# A recursive model as pydantic writes it, and as zod writes it (a ref to the root).
TREE = {"$defs": {"Node": {"type": "object", "properties": {
    "value": {"type": "integer"},
    "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}}},
    "required": ["value", "children"]}}, "$ref": "#/$defs/Node"}
ROOT_RECURSION = {"type": "object", "properties": {
    "label": {"type": "string"},
    "next": {"anyOf": [{"$ref": "#"}, {"type": "null"}]}}, "required": ["label", "next"]}


@pytest.fixture(scope="module")
def vocab():
    return LlamaModel(bundled_model_path()).vocab


def assert_llama_parses(vocab, grammar: str) -> None:
    sampler = L.llama_sampler_init_grammar(vocab, grammar.encode(), b"root")
    assert sampler, grammar
    L.llama_sampler_free(sampler)


def rule(grammar: str, name: str) -> str:
    return re.search(rf"(?m)^{re.escape(name)} ::= (.*)$", grammar).group(1)


GRAMMARS = {
    "json_object": lambda: schema_grammar({"type": "object"}),
    "json_schema": lambda: schema_grammar({"type": "object", "properties": {
        "lines": {"type": "array", "items": {"type": "string", "maxLength": 20}},
        "code": {"type": "string", "pattern": "^[^x]+.$"}}}),
    "tool_call": lambda: tool_call_grammar([ADDRESS_TOOL], "arguments",
                                           ('"<tool_call>\\n"', '"\\n</tool_call>"')),
}


@pytest.mark.parametrize("make", GRAMMARS.values(), ids=GRAMMARS.keys())
def test_json_strings_hold_no_raw_control_characters(vocab, make):
    grammar = make()
    assert_llama_parses(vocab, grammar)
    # Every character class a string may draw from leaves out quotes, backslashes and
    # U+0000-U+001F, which JSON allows only escaped.
    negated = re.findall(r'\[\^[^\]]*\]', grammar)
    assert negated
    assert all(c.startswith('[^"\\\\\\x00-\\x1F') for c in negated), negated
    assert "[^\\x0A\\x0D]" not in grammar


def test_type_list_with_null_keeps_its_enum(vocab):
    grammar = schema_grammar({"type": "object", "properties": {
        "unit": {"type": ["string", "null"], "enum": ["c", "f", None]}}, "required": ["unit"]})
    assert_llama_parses(vocab, grammar)
    assert rule(grammar, "schema-unit") == '"\\"c\\"" | "\\"f\\"" | "null"'


def test_type_list_keeps_the_other_keywords(vocab):
    grammar = schema_grammar({"type": ["integer", "null"], "minimum": 1})
    assert_llama_parses(vocab, grammar)
    assert "([1-9] | [1-9] [0-9]{1,15}) space" in grammar and "null" in grammar


@pytest.mark.parametrize("functions", [
    [ADDRESS_TOOL],
    [ADDRESS_TOOL, {"name": "other", "parameters": {
        "definitions": {"A": {"type": "integer"}},
        "type": "object", "properties": {"n": {"$ref": "#/definitions/A"}}}}],
    [{"name": "tree", "parameters": TREE}],
    [{"name": "chain", "parameters": ROOT_RECURSION}],
], ids=["defs", "same-def-name-in-two-tools", "recursive-defs", "ref-to-root"])
def test_tool_definitions_resolve_inside_the_call(vocab, functions):
    grammar = tool_call_grammar(functions, "arguments")
    assert_llama_parses(vocab, grammar)
    assert rule(grammar, "root") == "tool-call-object"


def test_recursive_rules_refer_to_themselves():
    grammar = schema_grammar(TREE)
    assert "schema-Node-children-item" in rule(grammar, "schema-Node-children")
    grammar = schema_grammar(ROOT_RECURSION)
    assert rule(grammar, "schema-next-0") == "schema"


@pytest.mark.parametrize(("schema", "keyword"), [
    ({"type": "number", "maximum": 9}, "maximum"),
    ({"type": "number", "minimum": 5}, "minimum"),
    ({"type": "number", "exclusiveMinimum": 0}, "exclusiveMinimum"),
    ({"type": "number", "multipleOf": 2}, "multipleOf"),
    ({"type": "object", "minProperties": 1}, "minProperties"),
    ({"type": "string", "format": "hostname"}, "format: hostname"),
    ({"type": "string", "pattern": "^a+$", "maxLength": 3}, "minLength/maxLength"),
    ({"type": "string", "format": "email", "maxLength": 30}, "minLength/maxLength"),
    ({"type": "string", "format": "date", "pattern": "^2"}, "format (with pattern)"),
    ({"type": "array", "items": {"type": "string"}, "uniqueItems": True}, "uniqueItems"),
    ({"type": ["string", "imaginary"]}, "type: imaginary"),
])
def test_keywords_the_grammar_cannot_enforce_are_refused_by_name(schema, keyword):
    with pytest.raises(APIError) as info:
        schema_grammar(schema, param="tools")
    assert info.value.status == 400 and info.value.param == "tools"
    assert f"'{keyword}" in info.value.message


@pytest.mark.parametrize(("schema", "expected"), [
    ({"type": "string", "pattern": r"^\d{2}\.\w$"}, '[0-9]'),
    ({"type": "string", "pattern": "ab"}, '"ab"'),
    ({"type": "string", "format": "email"}, '"@"'),
    ({"type": "integer", "exclusiveMinimum": 0}, "([1-9] | [1-9] [0-9]{1,15}) space"),
    ({"type": "integer", "minimum": 0, "maximum": 150},
     '([0-9] | [1-9] [0-9] | "1" [0-4] [0-9] | "1" "5" "0") space'),
    ({"type": ["integer", "null"], "maximum": -2}, '("-" [2-9] | "-" [1-9] [0-9]{1,15})'),
    ({"type": "number", "minimum": 0}, 'integral-part ("." decimal-part)? space'),
    ({"allOf": [{"type": "boolean"}], "description": "one"}, '("true" | "false")'),
])
def test_rewritten_keywords(vocab, schema, expected):
    grammar = schema_grammar(schema)
    assert_llama_parses(vocab, grammar)
    assert expected in grammar


def test_properties_named_like_keywords_are_schemas_too(vocab):
    grammar = schema_grammar({"$defs": {"D": {"type": "boolean"}}, "type": "object",
                              "properties": {"description": {"$ref": "#/$defs/D"}}})
    assert_llama_parses(vocab, grammar)
    assert rule(grammar, "schema-description") == "boolean"


@pytest.mark.parametrize(("low", "high"), [
    (0, 150), (1, None), (5, None), (0, 0), (-5, 5), (-120, -7), (None, 10), (None, -3),
    (37, 4321), (99, 1000), (-1000, None)])
def test_integer_ranges_admit_exactly_their_integers(low, high):
    # The rule read as a regex: the same digit classes and alternatives.
    rule = integer_range_rule(low, high).replace('"-" ', "-").replace(" | ", "|")
    pattern = re.compile(re.sub(r'"(\d)"', r"\1", rule).replace(" ", ""))
    for n in [*range(-1300, 5000), 10**12, -10**12]:
        inside = (low is None or n >= low) and (high is None or n <= high)
        assert bool(pattern.fullmatch(str(n))) == inside, n
    assert not pattern.fullmatch("007") and not pattern.fullmatch("-0")

"""How tool conversations reach a chat template, with and without native tool support."""

import json

from lmserve.api.chat.constraints import tool_call_grammar
from lmserve.api.chat.messages import template_messages
from lmserve.models.chat_template import ChatTemplate

# A small template in the Hermes/Qwen style: tools in the system turn, calls as
# <tool_call> JSON, results as tool turns.
TOOL_TEMPLATE = (
    "{% if tools %}<|im_start|>system\nTools:{% for t in tools %} {{ t | tojson }}{% endfor %}"
    "<|im_end|>\n{% endif %}"
    "{% for m in messages %}<|im_start|>{{ m.role }}\n"
    "{% if m.tool_calls %}{% for c in m.tool_calls %}<tool_call>\n"
    "{{ {'name': c.function.name, 'arguments': c.function.arguments} | tojson }}\n"
    "</tool_call>{% endfor %}{% else %}{{ m.content }}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CALL = {"id": "call_1", "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
CONVERSATION = [
    {"role": "developer", "content": "Be brief."},
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": "", "tool_calls": [CALL]},
    {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 21}'},
]


def test_native_template_gets_calls_with_parsed_arguments():
    messages = template_messages(CONVERSATION, native_tools=True)
    assert messages[0]["role"] == "system"
    assert messages[2]["tool_calls"][0]["function"]["arguments"] == {"city": "Paris"}
    assert messages[3] == CONVERSATION[3]
    text = ChatTemplate(TOOL_TEMPLATE, bos_token="", eos_token="").render(
        messages, tools=[{"type": "function", "function": {"name": "get_weather"}}])
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}' in text
    assert '<|im_start|>tool\n{"temp": 21}' in text
    assert text.endswith("<|im_start|>assistant\n")


def test_other_templates_get_calls_as_json_and_results_as_user_turns():
    messages = template_messages(CONVERSATION, native_tools=False)
    assert json.loads(messages[2]["content"]) == {"name": "get_weather",
                                                   "arguments": {"city": "Paris"}}
    assert "tool_calls" not in messages[2]
    assert messages[3] == {"role": "user", "content": 'Function result: {"temp": 21}'}


def test_forced_call_grammar_wraps_the_family_markers():
    fn = {"name": "f", "parameters": {"type": "object", "properties": {"x": {"type": "integer"}},
                                      "required": ["x"]}}
    hermes = tool_call_grammar("hermes", [fn])
    assert hermes.startswith('root ::= "<tool_call>\\n" tool-call-object "\\n</tool_call>"')
    generic = tool_call_grammar("generic", [fn])
    assert generic.startswith("root ::= tool-call-object\n")
    assert "\ntool-call-object ::=" in generic
    llama3 = tool_call_grammar("llama3", [fn])
    assert "parameters" in llama3

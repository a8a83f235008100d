"""The openai SDK's structured-output helpers with a nested model: `chat.completions.parse`,
the streaming `chat.completions.stream`, `responses.parse`, and strict function tools
from `pydantic_function_tool`. Tool calls are forced (the small test model does not pick
a tool by itself); values are checked for shape, not truth."""

import openai
import pytest

from tests.clients.scripts.people import PROMPT, Person

MESSAGES = [{"role": "user", "content": PROMPT}]
SETTINGS = {"model": "local-model", "temperature": 0, "max_tokens": 200}
TOOL = openai.pydantic_function_tool(Person, name="record_person")
FORCE_TOOL = {"type": "function", "function": {"name": "record_person"}}


def test_chat_parse_response_format(client):
    reply = client.chat.completions.parse(messages=MESSAGES, response_format=Person, **SETTINGS)
    assert isinstance(reply.choices[0].message.parsed, Person)


def test_chat_parse_forced_pydantic_function_tool(client):
    reply = client.chat.completions.parse(messages=MESSAGES, tools=[TOOL],
                                          tool_choice=FORCE_TOOL, **SETTINGS)
    call = reply.choices[0].message.tool_calls[0]
    assert call.function.name == "record_person"
    assert isinstance(call.function.parsed_arguments, Person)


def test_chat_stream_response_format(client):
    with client.chat.completions.stream(messages=MESSAGES, response_format=Person,
                                        **SETTINGS) as stream:
        events = list(stream)
        final = stream.get_final_completion()
    assert isinstance(final.choices[0].message.parsed, Person)
    partials = [e.parsed for e in events if e.type == "content.delta"]
    assert len(partials) > 2 and isinstance(partials[-1], dict)
    assert [e.parsed for e in events if e.type == "content.done"] == [
        final.choices[0].message.parsed]


def test_chat_stream_forced_pydantic_function_tool(client):
    with client.chat.completions.stream(messages=MESSAGES, tools=[TOOL],
                                        tool_choice=FORCE_TOOL, **SETTINGS) as stream:
        events = list(stream)
    done = [e for e in events if e.type == "tool_calls.function.arguments.done"]
    assert len(done) == 1 and done[0].name == "record_person"
    assert isinstance(done[0].parsed_arguments, Person)
    # Arguments stream as they are generated, not in one piece at the end.
    assert sum(e.type == "tool_calls.function.arguments.delta" for e in events) > 2


def test_responses_parse_text_format(client):
    reply = client.responses.parse(input=PROMPT, text_format=Person, model="local-model",
                                   temperature=0, max_output_tokens=200)
    assert isinstance(reply.output_parsed, Person)


@pytest.mark.parametrize("tool_choice", ["required", {"type": "function", "name": "Person"}],
                         ids=["required", "named"])
def test_responses_parse_forced_function_tool(client, tool_choice):
    reply = client.responses.parse(input=PROMPT, model="local-model", temperature=0,
                                   max_output_tokens=200, tool_choice=tool_choice,
                                   tools=[openai.pydantic_responses_function_tool(Person)])
    calls = [item for item in reply.output if item.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "Person"
    assert isinstance(calls[0].parsed_arguments, Person)

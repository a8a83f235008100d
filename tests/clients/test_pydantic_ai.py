"""pydantic-ai's Agent against lmserve: a nested output type and a function tool, through
`run_sync` and `run_stream`, with tool output (its default) and native structured output.

The small test model would not call the tool by itself, so the agent offers only the
function tool on its first step (pydantic-ai then sends `tool_choice: required`) and
only the output tool after the tool has answered: the run must go model → tool →
model → output. Values are not checked for truth, only for shape.
"""

import asyncio

import pytest
from pydantic_ai import Agent, NativeOutput
from pydantic_ai.capabilities import PrepareOutputTools
from pydantic_ai.messages import ToolCallPart, ToolReturnPart
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider

from tests.clients.scripts.people import PROMPT, Person


def _agent(base_url: str, output_type) -> tuple[Agent, list[str]]:
    """An agent with a `country_of` tool, offered until it has been called once."""
    model = OpenAIChatModel("local-model",
                            provider=OpenAIProvider(base_url=base_url, api_key="not-needed"))
    calls: list[str] = []

    async def after_the_tool(ctx, tool_defs):
        return tool_defs if calls else []

    async def until_called(ctx, tool_def):
        return None if calls else tool_def

    agent = Agent(model, output_type=output_type, retries=0,
                  model_settings={"temperature": 0, "max_tokens": 200},
                  capabilities=[PrepareOutputTools(after_the_tool)])

    @agent.tool_plain(prepare=until_called)
    def country_of(city: str) -> str:
        """The country a city is in."""
        calls.append(city)
        return "England"

    return agent, calls


def _tool_parts(messages) -> list[str]:
    return [f"{type(part).__name__}:{part.tool_name}" for message in messages
            for part in message.parts if isinstance(part, ToolCallPart | ToolReturnPart)]


def test_run_sync_calls_the_tool_then_returns_the_nested_output(server):
    agent, calls = _agent(server.base_url, Person)
    result = agent.run_sync(PROMPT)
    assert isinstance(result.output, Person)
    assert len(calls) == 1
    assert _tool_parts(result.all_messages()) == [
        "ToolCallPart:country_of", "ToolReturnPart:country_of",
        "ToolCallPart:final_result", "ToolReturnPart:final_result"]


def test_run_stream_streams_the_nested_output_as_it_is_generated(server):
    agent, calls = _agent(server.base_url, Person)

    async def run() -> tuple[list[str], Person]:
        async with agent.run_stream(PROMPT) as result:
            arguments = [part.args_as_json_str()
                         async for response in result.stream_response(debounce_by=None)
                         for part in response.parts
                         if isinstance(part, ToolCallPart) and part.tool_name == "final_result"]
            return arguments, await result.get_output()

    arguments, output = asyncio.run(run())
    assert isinstance(output, Person) and len(calls) == 1
    # The output tool's arguments arrive as they are generated, not in one piece at the end.
    assert len(set(arguments)) > 2, arguments


@pytest.mark.parametrize("streamed", [False, True], ids=["run_sync", "run_stream"])
def test_native_output(server, streamed):
    # With NativeOutput the schema goes in response_format and the tool is optional: the
    # model answers directly.
    agent, _ = _agent(server.base_url, NativeOutput(Person))
    if streamed:
        async def run() -> Person:
            async with agent.run_stream(PROMPT) as result:
                return await result.get_output()
        output = asyncio.run(run())
    else:
        output = agent.run_sync(PROMPT).output
    assert isinstance(output, Person)

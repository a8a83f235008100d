"""LangChain's ChatOpenAI against the server: tools and structured output."""

import pydantic
import pytest

langchain_openai = pytest.importorskip("langchain_openai", reason="langchain-openai missing")


class GetWeather(pydantic.BaseModel):
    """Get the current weather for a city."""

    city: str = pydantic.Field(description="The city name")


class Person(pydantic.BaseModel):
    name: str = pydantic.Field(max_length=40)
    age: int


@pytest.fixture(scope="module")
def llm(server):
    return langchain_openai.ChatOpenAI(base_url=server.base_url, api_key="not-needed",
                                       model="local-model", temperature=0, max_retries=0)


def test_bind_tools(llm):
    bound = llm.bind_tools([GetWeather], tool_choice="GetWeather")
    message = bound.invoke("What's the weather like in Lisbon?")
    assert message.tool_calls, message
    call = message.tool_calls[0]
    assert call["name"] == "GetWeather"
    GetWeather.model_validate(call["args"])
    assert call["id"].startswith("call_")


def test_with_structured_output(llm):
    structured = llm.with_structured_output(Person, method="json_schema")
    person = structured.invoke("Invent a person with a name and an age.")
    assert isinstance(person, Person)


def test_streaming_text(llm):
    chunks = list(llm.stream("Say hello in one short sentence."))
    assert "".join(c.content for c in chunks).strip()

"""POST /v1/completions: raw prompts, no template."""

from tests.openapi_schema import validate


def test_completion(client):
    reply = client.completions.create(model="m", prompt="The capital of France is",
                                      max_tokens=8, temperature=0)
    assert reply.object == "text_completion"
    assert "Paris" in reply.choices[0].text
    assert reply.usage.completion_tokens <= 8
    validate(reply.model_dump(exclude_unset=True), "CreateCompletionResponse")


def test_default_max_tokens_is_16(client):
    reply = client.completions.create(model="m", prompt="Once upon a time", temperature=0)
    assert reply.usage.completion_tokens == 16
    assert reply.choices[0].finish_reason == "length"


def test_completion_stream(client):
    kwargs = dict(model="m", prompt="The capital of France is", max_tokens=12, temperature=0)
    whole = client.completions.create(**kwargs).choices[0].text
    chunks = list(client.completions.create(**kwargs, stream=True))
    assert "".join(c.choices[0].text for c in chunks) == whole
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")


def test_several_prompts_give_one_choice_each(client):
    reply = client.completions.create(model="m", prompt=["1, 2, 3,", "a, b, c,"],
                                      max_tokens=4, temperature=0)
    assert [c.index for c in reply.choices] == [0, 1]
    assert "4" in reply.choices[0].text and "d" in reply.choices[1].text


def test_token_prompt_and_echo(client):
    reply = client.completions.create(model="m", prompt="Hello there", max_tokens=3,
                                      temperature=0, echo=True)
    assert reply.choices[0].text.startswith("Hello there")

"""POST /v1/completions: raw prompts, no template."""

import httpx

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


def test_text_offsets_point_into_the_text(client):
    reply = client.completions.create(model="m", prompt="Hello there", max_tokens=3,
                                      temperature=0, echo=True, logprobs=0,
                                      extra_body={"ignore_eos": True})
    choice = reply.choices[0]
    lp = choice.logprobs
    for token, offset in zip(lp.tokens, lp.text_offset, strict=True):
        assert choice.text[offset:offset + len(token)] == token


def test_logprobs_of_generated_tokens(client):
    reply = client.completions.create(model="m", prompt="The capital of France is",
                                      max_tokens=6, temperature=0, logprobs=3)
    validate(reply.model_dump(exclude_unset=True), "CreateCompletionResponse")
    choice = reply.choices[0]
    lp = choice.logprobs
    assert len(lp.tokens) == reply.usage.completion_tokens == 6
    assert "".join(lp.tokens) == choice.text
    assert lp.text_offset == [sum(len(t) for t in lp.tokens[:i]) for i in range(6)]
    for token, value, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs, strict=True):
        assert value <= 0 and len(top) <= 4 and top[token] == value
        assert max(top.values()) == value  # greedy picks the most likely token

    chunks = list(client.completions.create(model="m", prompt="The capital of France is",
                                            max_tokens=6, temperature=0, logprobs=3,
                                            stream=True))
    streamed = [t for c in chunks if c.choices[0].logprobs for t in c.choices[0].logprobs.tokens]
    assert streamed == lp.tokens


def test_echo_with_logprobs_scores_the_prompt(client):
    """What evaluation harnesses do: max_tokens 0, echo, logprobs."""
    prompt = "The capital of France is Paris"
    reply = client.completions.create(model="m", prompt=prompt, max_tokens=0, echo=True,
                                      logprobs=1, temperature=0)
    choice = reply.choices[0]
    assert choice.text == prompt and choice.finish_reason == "length"
    assert reply.usage.completion_tokens == 0
    lp = choice.logprobs
    assert len(lp.tokens) == reply.usage.prompt_tokens and "".join(lp.tokens) == prompt
    assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
    assert all(v < 0 for v in lp.token_logprobs[1:])

    # The score of " Paris" is the logprob the model gives it when generating it.
    generated = client.completions.create(model="m", prompt="The capital of France is",
                                          max_tokens=1, temperature=0, logprobs=1)
    assert generated.choices[0].logprobs.tokens == [" Paris"] == lp.tokens[-1:]
    assert abs(generated.choices[0].logprobs.token_logprobs[0] - lp.token_logprobs[-1]) < 1e-3


def test_scoring_a_long_prompt_across_batches(client):
    # Longer than one scoring batch: each token's score depends only on what precedes it.
    prompt = " ".join(f"item {i}," for i in range(60))
    full = client.completions.create(model="m", prompt=prompt, max_tokens=0, echo=True,
                                     logprobs=0).choices[0].logprobs
    assert len(full.tokens) > 150
    head = "".join(full.tokens[:100])
    part = client.completions.create(model="m", prompt=head, max_tokens=0, echo=True,
                                     logprobs=0).choices[0].logprobs
    assert part.tokens == full.tokens[:100]
    # Equal up to float noise from the batch shapes (a few hundredths at most here); a
    # token scored at the wrong position would be off by whole nats.
    assert all(abs(a - b) < 0.1
               for a, b in zip(part.token_logprobs[1:], full.token_logprobs[1:100], strict=True))


def test_streamed_echo_carries_the_prompt_scores_first(client):
    chunks = list(client.completions.create(model="m", prompt="Hello there", max_tokens=2,
                                            echo=True, logprobs=1, temperature=0,
                                            stream=True))
    first = chunks[0].choices[0]
    assert first.text == "Hello there"
    assert "".join(first.logprobs.tokens) == "Hello there"
    assert first.logprobs.token_logprobs[0] is None
    generated = [c.choices[0] for c in chunks[1:] if c.choices[0].text]
    assert generated and all(c.logprobs.tokens for c in generated)


def test_a_natural_end_is_listed_as_its_token(client):
    prompt = "<|im_start|>user\nReply with one word: yes or no?<|im_end|>\n<|im_start|>assistant\n"
    reply = client.completions.create(model="m", prompt=prompt, max_tokens=20, temperature=0,
                                      logprobs=1)
    choice = reply.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.logprobs.tokens[-1] == "<|im_end|>"  # as OpenAI lists <|endoftext|>
    assert "".join(choice.logprobs.tokens[:-1]) == choice.text
    assert list(choice.logprobs.top_logprobs[-1]) == ["<|im_end|>"]


def test_loglikelihood_requests_as_lm_eval_sends_them(server, client):
    """lm-evaluation-harness's local-completions with its remote tokenizer: token
    prompts in a batch, echo, max_tokens 1, logprobs 1; it sums token_logprobs[ctxlen:-1]."""
    def tokenize(text: str) -> list[int]:
        return httpx.post(server.origin + "/tokenize", timeout=10,
                          json={"prompt": text, "add_special_tokens": False}).json()["tokens"]

    context = tokenize("The capital of France is")
    choices = [tokenize(" Paris"), tokenize(" a banana")]
    reply = client.completions.create(model="m", prompt=[context + c for c in choices],
                                      max_tokens=1, logprobs=1, echo=True, temperature=0,
                                      seed=1234)
    scores = []
    for choice, continuation in zip(sorted(reply.choices, key=lambda c: c.index), choices,
                                    strict=True):
        lp = choice.logprobs
        assert len(lp.tokens) == len(context) + len(continuation) + 1
        window = slice(len(context), -1)
        scores.append(sum(lp.token_logprobs[window]))
        greedy = all(v == max(top.values())
                     for v, top in zip(lp.token_logprobs[window], lp.top_logprobs[window],
                                       strict=True))
        assert greedy == (continuation == choices[0])  # " Paris" is what it would say
    assert scores[0] > scores[1]

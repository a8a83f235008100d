"""litellm against lmserve as an OpenAI-compatible provider: completion, streaming,
embedding and a tool call.

Usage: litellm_session.py BASE_URL CHAT_MODEL EMBEDDING_MODEL. Prints JSON with one
entry per part, each holding what was seen or the error it raised. The tool call is
forced: the small test model does not pick a tool by itself.
"""

import json
import sys

import litellm
from parts import run_parts

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the weather at a place.",
        "parameters": {
            "type": "object",
            "properties": {
                "place": {
                    "type": "object",
                    "properties": {
                        "city": {"type": "string", "maxLength": 24},
                        "country": {"type": "string", "maxLength": 24},
                    },
                    "required": ["city", "country"],
                },
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["place", "unit"],
        },
    },
}


def _cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (sum(x * x for x in a) * sum(y * y for y in b)) ** 0.5


def session(base_url: str, chat_model: str, embedding_model: str) -> dict:
    common = {"api_base": base_url, "api_key": "not-needed", "num_retries": 0}
    chat = {**common, "model": f"openai/{chat_model}", "temperature": 0, "max_tokens": 12}
    messages = [{"role": "user", "content": "Name three colours."}]

    def completion() -> dict:
        reply = litellm.completion(messages=messages, **chat)
        return {"text": reply.choices[0].message.content,
                "finish_reason": reply.choices[0].finish_reason,
                "completion_tokens": reply.usage.completion_tokens}

    def streaming() -> dict:
        pieces = [chunk.choices[0].delta.content or ""
                  for chunk in litellm.completion(messages=messages, stream=True, **chat)]
        return {"pieces": pieces}

    def embedding() -> dict:
        reply = litellm.embedding(model=f"openai/{embedding_model}", **common,
                                  input=["A cat sits on the mat.", "A kitten rests on a rug.",
                                         "Quarterly tax filing deadlines"])
        vectors = [d["embedding"] for d in reply.data]
        return {"dimensions": [len(v) for v in vectors],
                "similarity": {"paraphrase": _cosine(vectors[0], vectors[1]),
                               "unrelated": _cosine(vectors[0], vectors[2])},
                "prompt_tokens": reply.usage.prompt_tokens}

    def tools(stream: bool) -> dict:
        question = [{"role": "user", "content": "What is the weather in Paris, France?"}]
        reply = litellm.completion(
            messages=question, tools=[WEATHER_TOOL], stream=stream,
            tool_choice={"type": "function", "function": {"name": "get_weather"}},
            **{**chat, "max_tokens": 120})
        fragments = 0
        if stream:
            chunks = list(reply)
            fragments = sum(1 for c in chunks for call in c.choices[0].delta.tool_calls or []
                            if call.function.arguments)
            reply = litellm.stream_chunk_builder(chunks, messages=question)
        call = reply.choices[0].message.tool_calls[0]
        return {"name": call.function.name, "arguments": call.function.arguments,
                "finish_reason": reply.choices[0].finish_reason,
                "argument_fragments": fragments}

    return run_parts({"completion": completion, "streaming": streaming,
                      "embedding": embedding, "tools": lambda: tools(False),
                      "tools_streaming": lambda: tools(True)})


if __name__ == "__main__":
    print(json.dumps(session(*sys.argv[1:4])))

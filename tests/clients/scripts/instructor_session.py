"""instructor extracting the nested Person through lmserve in each of its modes.

Usage: instructor_session.py BASE_URL. Prints JSON with one entry per mode: the person
extracted (for `partial`, every partial object streamed), or the error raised.
Retries are off so that a reply that fails validation fails its mode; temperature 0.
"""

import json
import sys

import instructor
from openai import OpenAI
from parts import run_parts
from people import PROMPT, Person

MODES = {
    "tools": instructor.Mode.TOOLS,
    "json_schema": instructor.Mode.JSON_SCHEMA,
    "tools_strict": instructor.Mode.TOOLS_STRICT,
    "partial": instructor.Mode.TOOLS,
}


def extract(base_url: str, mode: str) -> dict:
    client = instructor.from_openai(
        OpenAI(base_url=base_url, api_key="not-needed", max_retries=0), mode=MODES[mode])
    request = {
        "model": "local-model",
        "messages": [{"role": "user", "content": PROMPT}],
        "response_model": Person,
        "max_retries": 0,
        "temperature": 0,
        "max_tokens": 200,
    }
    if mode == "partial":
        return {"partials": [p.model_dump() for p in client.create_partial(**request)]}
    return {"person": client.create(**request).model_dump()}


def main() -> None:
    base_url = sys.argv[1]
    print(json.dumps(run_parts({mode: lambda mode=mode: extract(base_url, mode)
                                for mode in MODES})))


if __name__ == "__main__":
    main()

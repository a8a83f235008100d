"""instructor (its own virtualenv: it pins an older jiter) extracting a nested model in
its TOOLS, JSON_SCHEMA and TOOLS_STRICT modes, and streaming partial objects.

The small test model is held to the schema by grammars (forced tool call or
response_format), so these check that a valid nested object comes back through each
mode, not that the model reads the text correctly.
"""

import pytest

from tests.clients.scripts.people import Person
from tests.clients.venvs import part, run_script


@pytest.fixture(scope="module")
def seen(server) -> dict:
    return run_script("instructor", "instructor_session.py", server.base_url)



@pytest.mark.parametrize("mode", ["tools", "json_schema", "tools_strict"])
def test_instructor_extracts_a_nested_model(seen, mode):
    person = Person.model_validate(part(seen, mode)["person"])
    assert person.name


def test_instructor_streams_partial_objects(seen):
    partials = part(seen, "partial")["partials"]
    Person.model_validate(partials[-1])
    # Tool-call arguments must arrive as they are generated: some partial object holds the
    # name before the address is filled in.
    assert any(p["name"] and not (p.get("address") or {}).get("country") for p in partials), \
        partials

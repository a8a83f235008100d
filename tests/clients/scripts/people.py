"""The nested model every client extracts, and the text it is extracted from.

Strings and numbers are bounded so that the small test model, held to the schema by a
grammar, cannot loop inside a value until `max_tokens` cuts the JSON short.
"""

from pydantic import BaseModel, Field

TEXT = "Ada Lovelace is 36 years old and lives in London, England."
PROMPT = f"Extract the person from this text: {TEXT}"


class Address(BaseModel):
    city: str = Field(max_length=24)
    country: str = Field(max_length=24)


class Person(BaseModel):
    """A person and where they live."""

    name: str = Field(max_length=32)
    age: int = Field(ge=0, le=150)
    address: Address

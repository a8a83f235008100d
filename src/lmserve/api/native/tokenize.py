"""The models' tokenizers over HTTP.

`/api/v1/tokenize` and `/api/v1/detokenize` are lmserve's own. `/tokenize`,
`/detokenize` and `/tokenizer_info` at the root answer in the shapes vLLM serves them,
which is what lm-evaluation-harness's remote tokenizer reads: with them it evaluates a
GGUF model through `/v1/completions` without a Hugging Face tokenizer of its own.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field, model_validator

from lmserve.api.deps import get_manager
from lmserve.api.errors import APIError
from lmserve.api.openai.protocol import ChatMessage, Tool
from lmserve.models import Model, ModelManager

router = APIRouter()


class TokenizeRequest(BaseModel):
    model_config = ConfigDict(strict=True)
    model: str = Field(min_length=1)
    text: str
    add_special: bool = False
    with_pieces: bool = False


class DetokenizeRequest(BaseModel):
    model_config = ConfigDict(strict=True)
    model: str = Field(min_length=1)
    tokens: list[int]


@router.post("/api/v1/tokenize")
async def tokenize(body: TokenizeRequest,
                   manager: ModelManager = Depends(get_manager)) -> dict[str, Any]:
    model = await manager.resolve(body.model)
    tokens = model.llama.tokenize(body.text, add_special=body.add_special, parse_special=True)
    out: dict[str, Any] = {"model": model.id, "tokens": tokens}
    if body.with_pieces:
        out["pieces"] = [model.llama.token_bytes(t, special=True).decode(errors="replace")
                         for t in tokens]
    return out


@router.post("/api/v1/detokenize")
async def detokenize(body: DetokenizeRequest,
                     manager: ModelManager = Depends(get_manager)) -> dict[str, Any]:
    model = await manager.resolve(body.model)
    return {"model": model.id, "text": _text_of(model, body.tokens)}


def _text_of(model: Model, tokens: list[int], *, special: bool = False) -> str:
    if any(t < 0 or t >= model.llama.n_vocab for t in tokens):
        raise APIError(400, f"Token ids must be in [0, {model.llama.n_vocab}).",
                       param="tokens")
    return model.llama.detokenize(tokens, special=special)


# -- vLLM's shapes -------------------------------------------------------------------------

# No model named: the one loaded model serves, as for any unknown name.
_LOADED = ""


class RootTokenizeRequest(BaseModel):
    """vLLM's two forms: a `prompt`, or chat `messages` rendered by the model's template."""

    # Extra fields: chat_template_kwargs and the like.
    model_config = ConfigDict(strict=True, extra="allow")
    model: str = _LOADED
    prompt: str | None = None
    messages: list[ChatMessage] | None = Field(default=None, min_length=1)
    # vLLM's defaults: BOS added to a prompt; a rendered chat has its own.
    add_special_tokens: bool | None = None
    add_generation_prompt: bool = True
    continue_final_message: bool = False
    tools: list[Tool] | None = None
    return_token_strs: bool = False

    @model_validator(mode="after")
    def _one_input(self) -> RootTokenizeRequest:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("Give either 'prompt' or 'messages'.")
        if self.continue_final_message and self.add_generation_prompt and \
                "add_generation_prompt" in self.model_fields_set:
            raise ValueError("'continue_final_message' and 'add_generation_prompt' "
                             "cannot both be true.")
        return self

    def text(self, model: Model) -> str:
        if self.messages is None:
            return self.prompt or ""
        messages = [m.as_template_dict() for m in self.messages]
        tools = [t.model_dump(exclude_none=True) for t in self.tools or []] or None
        generation_prompt = self.add_generation_prompt and not self.continue_final_message
        text = model.template.render(messages, tools=tools,
                                     add_generation_prompt=generation_prompt)
        final = messages[-1]["content"]
        if self.continue_final_message and final and final in text:
            # End on the final message itself, so that generation continues it.
            text = text[:text.rindex(final) + len(final)]
        return text


class RootDetokenizeRequest(BaseModel):
    model_config = ConfigDict(strict=True)
    model: str = _LOADED
    tokens: list[int]


@router.post("/tokenize")
async def root_tokenize(body: RootTokenizeRequest,
                        manager: ModelManager = Depends(get_manager)) -> dict[str, Any]:
    model = await manager.resolve(body.model)
    add_special = body.add_special_tokens
    if add_special is None:
        add_special = body.messages is None
    tokens = model.llama.tokenize(body.text(model), add_special=add_special,
                                  parse_special=True)
    strs = [model.llama.token_bytes(t, special=True).decode(errors="replace")
            for t in tokens] if body.return_token_strs else None
    return {"count": len(tokens), "max_model_len": model.context_length, "tokens": tokens,
            "token_strs": strs}


@router.post("/detokenize")
async def root_detokenize(body: RootDetokenizeRequest,
                          manager: ModelManager = Depends(get_manager)) -> dict[str, Any]:
    model = await manager.resolve(body.model)
    # As vLLM decodes: special tokens are kept, as their text.
    return {"prompt": _text_of(model, body.tokens, special=True)}


@router.get("/tokenizer_info")
async def tokenizer_info(model: str = _LOADED,
                         manager: ModelManager = Depends(get_manager)) -> dict[str, Any]:
    m = await manager.resolve(model)
    template = m.template
    return {"tokenizer_class": "GGUF", "model": m.id,
            "bos_token": template.bos_token or None, "eos_token": template.eos_token or None,
            "pad_token": None, "chat_template": m.llama.chat_template,
            "model_max_length": m.context_length}

"""The engine: one thread per loaded model drives its llama.cpp context."""

from lmserve.engine.engine import Engine, EngineStatus, QueueFullError
from lmserve.engine.llama import LlamaModel
from lmserve.engine.request import (
    ContextOverflowError,
    Delta,
    Done,
    EmbeddingRequest,
    Failed,
    GenerationRequest,
    PromptLogprobs,
    PromptProgress,
)
from lmserve.engine.sampling import SamplingParams

__all__ = [
    "ContextOverflowError",
    "Delta",
    "Done",
    "EmbeddingRequest",
    "Engine",
    "EngineStatus",
    "Failed",
    "GenerationRequest",
    "LlamaModel",
    "PromptLogprobs",
    "PromptProgress",
    "QueueFullError",
    "SamplingParams",
]

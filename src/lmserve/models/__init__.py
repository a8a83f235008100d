"""Models: what is on disk and what is loaded."""

from lmserve.models.manager import ModelManager, ModelNotFoundError
from lmserve.models.model import GenerationStream, Model

__all__ = ["GenerationStream", "Model", "ModelManager", "ModelNotFoundError"]

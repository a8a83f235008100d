"""Converters from Hugging Face checkpoints to GGUF files that llama.cpp loads."""

from lmserve.convert.hf_bert import convert_bert_folder, is_bert_folder

__all__ = ["convert_bert_folder", "is_bert_folder"]

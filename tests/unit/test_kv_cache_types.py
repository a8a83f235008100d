"""The KV-cache types lmserve accepts are ggml's own: each name maps to the ggml type of
that name, and its bytes per value (the memory estimate's) are ggml's block size."""

from __future__ import annotations

import ctypes

import pytest
from llama_cpp._ggml import libggml

from lmserve.engine.llama import ggml_type
from lmserve.models.load_options import KV_CACHE_TYPES

libggml.ggml_type_name.restype, libggml.ggml_type_name.argtypes = ctypes.c_char_p, [ctypes.c_int]
libggml.ggml_type_size.restype, libggml.ggml_type_size.argtypes = ctypes.c_size_t, [ctypes.c_int]
libggml.ggml_blck_size.restype, libggml.ggml_blck_size.argtypes = ctypes.c_int64, [ctypes.c_int]


@pytest.mark.parametrize("name", list(KV_CACHE_TYPES))
def test_each_kv_cache_type_is_ggmls_type_of_that_name_and_size(name):
    number = ggml_type(name)
    assert libggml.ggml_type_name(number).decode() == name
    per_value = libggml.ggml_type_size(number) / libggml.ggml_blck_size(number)
    assert KV_CACHE_TYPES[name] == per_value

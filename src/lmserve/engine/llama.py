"""A loaded GGUF model: weights, vocabulary and metadata, through llama.cpp's C API.

Everything here is read-only after loading (tokenize, detokenize, metadata), which
llama.cpp allows from any thread. Contexts, which are not thread-safe, live in the engine.
"""

from __future__ import annotations

import ctypes
import functools
import os
import threading
from collections.abc import Callable
from pathlib import Path

import llama_cpp as L

_backend_lock = threading.Lock()
_backend_ready = False


_GGML_LOG_LEVEL_ERROR = 4  # enum ggml_log_level


def _quiet_log(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
    # llama.cpp logs every load step to stderr; keep only errors.
    if level == _GGML_LOG_LEVEL_ERROR and text:
        os.write(2, text)


_log_callback = L.llama_log_callback(_quiet_log)


def init_backend() -> None:
    global _backend_ready
    with _backend_lock:
        if not _backend_ready:
            if not os.environ.get("LMSERVE_LLAMA_VERBOSE"):
                L.llama_log_set(_log_callback, ctypes.c_void_p())
            L.llama_backend_init()
            _backend_ready = True


class ModelLoadError(RuntimeError):
    pass


FLASH_ATTENTION_TYPES = {"auto": L.LLAMA_FLASH_ATTN_TYPE_AUTO,
                         "on": L.LLAMA_FLASH_ATTN_TYPE_ENABLED,
                         "off": L.LLAMA_FLASH_ATTN_TYPE_DISABLED}


# enum ggml_type, for the KV-cache types (llama_cpp does not name BF16)
_GGML_TYPES = {"f32": 0, "f16": 1, "q4_0": 2, "q4_1": 3, "q5_0": 6, "q5_1": 7, "q8_0": 8,
               "iq4_nl": 20, "bf16": 30}


def ggml_type(name: str) -> int:
    """ggml's number for a tensor type named as in llama-server ("f16", "q8_0")."""
    return _GGML_TYPES[name]


def _load_mode(use_mmap: bool, mlock: bool) -> int:
    if use_mmap:
        return L.LLAMA_LOAD_MODE_MMAP_MLOCK if mlock else L.LLAMA_LOAD_MODE_MMAP
    return L.LLAMA_LOAD_MODE_MLOCK if mlock else L.LLAMA_LOAD_MODE_NONE


class LlamaModel:
    """Model weights and vocabulary, shared by every context made from them."""

    def __init__(self, path: str | Path, *, n_gpu_layers: int = 0, use_mmap: bool = True,
                 mlock: bool = False, on_progress: Callable[[float], None] | None = None
                 ) -> None:
        """n_gpu_layers: layers offloaded to the GPU (the output layer counts as one);
        use_mmap: map the file instead of reading it; mlock: keep the weights in RAM;
        on_progress: called from the loading thread with the share loaded, 0 to 1."""
        init_backend()
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelLoadError(f"model file not found: {self.path}")
        params = L.llama_model_default_params()
        params.n_gpu_layers = n_gpu_layers
        params.load_mode = _load_mode(use_mmap, mlock)
        if on_progress is not None:
            def report(progress: float, _: ctypes.c_void_p) -> bool:
                on_progress(progress)
                return True  # go on loading

            # Held until the load returns: llama.cpp calls it during the load only.
            callback = L.llama_progress_callback(report)
            params.progress_callback = callback
        self.ptr = L.llama_model_load_from_file(str(self.path).encode(), params)
        if not self.ptr:
            raise ModelLoadError(f"llama.cpp could not load {self.path}")
        self.vocab = L.llama_model_get_vocab(self.ptr)
        self.n_vocab = L.llama_vocab_n_tokens(self.vocab)
        self.n_ctx_train = L.llama_model_n_ctx_train(self.ptr)
        self.n_embd = L.llama_model_n_embd(self.ptr)
        self.n_layer = L.llama_model_n_layer(self.ptr)
        self.bos = L.llama_vocab_bos(self.vocab)
        self.eos = L.llama_vocab_eos(self.vocab)
        self.add_bos = bool(L.llama_vocab_get_add_bos(self.vocab))
        self.has_encoder = bool(L.llama_model_has_encoder(self.ptr))
        self._piece_buf = ctypes.create_string_buffer(256)

    # -- metadata ---------------------------------------------------------------------

    def meta(self, key: str) -> str | None:
        size = 256
        while True:
            buf = ctypes.create_string_buffer(size)
            n = L.llama_model_meta_val_str(self.ptr, key.encode(), buf, size)
            if n < 0:
                return None
            if n < size:
                return buf.raw[:n].decode("utf-8", errors="replace")
            size = n + 1

    @property
    def chat_template(self) -> str | None:
        return self.meta("tokenizer.chat_template")

    @property
    def architecture(self) -> str | None:
        return self.meta("general.architecture")

    @property
    def description(self) -> str:
        buf = ctypes.create_string_buffer(256)
        n = L.llama_model_desc(self.ptr, buf, 256)
        return buf.raw[: max(n, 0)].decode("utf-8", errors="replace")

    @property
    def n_params(self) -> int:
        return int(L.llama_model_n_params(self.ptr))

    @property
    def size_bytes(self) -> int:
        return int(L.llama_model_size(self.ptr))

    # -- vocabulary -------------------------------------------------------------------

    def token_text(self, token: int) -> str:
        raw = L.llama_vocab_get_text(self.vocab, token)
        return raw.decode("utf-8", errors="replace") if raw else ""

    def tokenize(self, text: str, *, add_special: bool, parse_special: bool) -> list[int]:
        data = text.encode("utf-8")
        capacity = len(data) + 8
        while True:
            buf = (L.llama_token * capacity)()
            n = L.llama_tokenize(self.vocab, data, len(data), buf, capacity, add_special,
                                 parse_special)
            if n >= 0:
                return list(buf[:n])
            capacity = -n

    def token_bytes(self, token: int, *, special: bool = False) -> bytes:
        """The raw bytes of one token; may be part of a multi-byte UTF-8 character."""
        buf = self._piece_buf
        n = L.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, special)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = L.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, special)
        return buf.raw[:n]

    def detokenize(self, tokens: list[int], *, special: bool = False) -> str:
        """The text of `tokens`; with `special`, control tokens (BOS, EOS...) as their text."""
        return b"".join(self.token_bytes(t, special=special) for t in tokens).decode(
            "utf-8", errors="replace")

    def is_eog(self, token: int) -> bool:
        return bool(L.llama_vocab_is_eog(self.vocab, token))

    @functools.cached_property
    def eog_tokens(self) -> tuple[int, ...]:
        """Every token that ends generation (EOS, EOT, <|im_end|>, ...)."""
        return tuple(t for t in range(self.n_vocab) if self.is_eog(t))

    def close(self) -> None:
        if self.ptr:
            L.llama_model_free(self.ptr)
            self.ptr = None

"""How much memory a model needs when loaded: weights plus its KV cache.

Read from the GGUF header, without loading the model."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path


@lru_cache(maxsize=64)
def _kv_shape(path: str) -> tuple[int, int]:
    """(layers, K or V width per token) from the GGUF metadata."""
    from gguf import GGUFReader

    reader = GGUFReader(path)

    def value(key: str) -> int | None:
        field = reader.get_field(key)
        if field is None:
            return None
        raw = field.parts[field.data[0]]
        return int(raw[0])

    arch_field = reader.get_field("general.architecture")
    arch = bytes(arch_field.parts[arch_field.data[0]]).decode() if arch_field else ""
    n_layer = value(f"{arch}.block_count") or 0
    n_embd = value(f"{arch}.embedding_length") or 0
    n_head = value(f"{arch}.attention.head_count") or 1
    n_head_kv = value(f"{arch}.attention.head_count_kv") or n_head
    head_dim = value(f"{arch}.attention.key_length") or n_embd // n_head
    return n_layer, head_dim * n_head_kv


def estimate_file_memory(path: str | Path, context_length: int, parallel: int
                         ) -> dict[str, int]:
    """Bytes for the weights and for an f16 KV cache of parallel x context_length."""
    n_layer, kv_width = _kv_shape(str(path))
    weights = Path(path).stat().st_size
    kv_cache = context_length * parallel * n_layer * kv_width * 2 * 2  # K and V, 2 bytes
    return {"weights": weights, "kv_cache": kv_cache, "total": weights + kv_cache}

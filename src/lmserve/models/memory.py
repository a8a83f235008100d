"""How much memory a model needs when loaded: weights plus its KV cache.

Read from the GGUF header, without loading the model."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path


@lru_cache(maxsize=64)
def _kv_shape(path: str) -> tuple[int, int]:
    """(layers, K or V width per token) from the GGUF metadata."""
    from lmserve.models.gguf_header import read_gguf_info

    meta = read_gguf_info(Path(path)).metadata
    arch = meta.get("general.architecture", "")

    def value(key: str, default: int) -> int:
        v = meta.get(f"{arch}.{key}")
        return int(v) if isinstance(v, int | float) else default

    n_embd = value("embedding_length", 0)
    n_head = value("attention.head_count", 1) or 1
    n_head_kv = value("attention.head_count_kv", n_head)
    head_dim = value("attention.key_length", n_embd // n_head)
    return value("block_count", 0), head_dim * n_head_kv


def estimate_file_memory(path: str | Path, context_length: int, parallel: int
                         ) -> dict[str, int]:
    """Bytes for the weights and for an f16 KV cache of parallel x context_length."""
    n_layer, kv_width = _kv_shape(str(path))
    weights = Path(path).stat().st_size
    kv_cache = context_length * parallel * n_layer * kv_width * 2 * 2  # K and V, 2 bytes
    return {"weights": weights, "kv_cache": kv_cache, "total": weights + kv_cache}


def available_memory() -> int | None:
    """Bytes the kernel could give a new load now (MemAvailable), or None where unknown."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def megabytes(n: int) -> str:
    return f"{n / 2**20:,.0f} MB"

"""The shape of a loaded model when nothing else is asked for, in one place: the config
file, the command line, the load path and the engine read these."""

CONTEXT_LENGTH = 4096  # tokens per slot: what one conversation can hold
PARALLEL = 4  # slots: requests generated at once
MAX_QUEUE = 64  # requests that may wait for a slot before new ones get 503
BATCH_SIZE = 512  # tokens one llama_decode takes (n_batch)
# Prompt tokens read per tick while other requests generate: bounds their token gap
# (measured in docs/benchmarks.md, "Prefill budget").
PREFILL_BUDGET = 64
FLASH_ATTENTION = "auto"  # llama.cpp enables it where the backend supports it
KV_CACHE_TYPE = "f16"  # of both K and V (docs/benchmarks.md, "Load options")

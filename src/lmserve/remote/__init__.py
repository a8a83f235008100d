"""Models served by remote engines (other lmserve nodes, llama-server, vLLM, SGLang)
behind lmserve's own endpoint: their config entries, a pool of upstreams per model with
least-outstanding-requests balancing and health checks, and a streaming proxy."""

"""lmserve's own routes, beside /v1."""

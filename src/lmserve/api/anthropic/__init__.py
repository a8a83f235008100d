"""Anthropic's Messages API on the loaded models."""

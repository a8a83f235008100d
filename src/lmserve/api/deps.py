"""What route handlers get from the application."""

from __future__ import annotations

from fastapi import Request

from lmserve.models import ModelManager


def get_manager(request: Request) -> ModelManager:
    return request.app.state.manager

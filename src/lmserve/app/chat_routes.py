"""/app/api/conversations: the Chat tab's saved conversations (create, list, open,
rename or save, delete, export as JSON)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from lmserve.api.errors import APIError
from lmserve.app.conversations import ConversationStore, check_changes

router = APIRouter(prefix="/app/api/conversations")


def _store(request: Request) -> ConversationStore:
    return request.app.state.conversations


async def _changes(request: Request) -> dict[str, Any]:
    try:
        return check_changes(await request.json())
    except ValueError as exc:  # not JSON, or a field of the wrong shape
        field = str(exc).partition(": ")[0]
        raise APIError(400, f"Invalid conversation: {exc}", param=field or None,
                       code="invalid_conversation") from None


def _found(conversation: dict[str, Any] | None, conversation_id: str) -> dict[str, Any]:
    if conversation is None:
        raise APIError(404, f"No conversation {conversation_id!r}.", param="id",
                       code="conversation_not_found")
    return conversation


@router.get("")
async def list_conversations(request: Request) -> dict[str, Any]:
    return {"data": _store(request).list()}


@router.post("")
async def create_conversation(request: Request) -> dict[str, Any]:
    body = await _changes(request)
    return _store(request).create(body.get("title") or "New chat", body.get("messages", []),
                                  body.get("settings", {}))


@router.get("/{conversation_id}")
async def get_conversation(conversation_id: str, request: Request) -> dict[str, Any]:
    return _found(_store(request).get(conversation_id), conversation_id)


@router.put("/{conversation_id}")
async def update_conversation(conversation_id: str, request: Request) -> dict[str, Any]:
    body = await _changes(request)
    return _found(_store(request).update(conversation_id, body), conversation_id)


@router.delete("/{conversation_id}")
async def delete_conversation(conversation_id: str, request: Request) -> dict[str, Any]:
    if not _store(request).delete(conversation_id):
        _found(None, conversation_id)
    return {"id": conversation_id, "deleted": True}


@router.get("/{conversation_id}/export")
async def export_conversation(conversation_id: str, request: Request) -> JSONResponse:
    conversation = _found(_store(request).get(conversation_id), conversation_id)
    name = "".join(c if c.isalnum() else "-" for c in conversation["title"])[:60] or "chat"
    return JSONResponse(conversation, headers={
        "Content-Disposition": f'attachment; filename="{name}.json"'})

"""Import a model from a path on this machine into the library, as `lmserve import` does.

POST /api/v1/models/import   {"path", "mode": copy|move|symlink|hardlink, "user_repo"?}

The one route that reads a path its caller names, so it is an admin route (an admin key
when keys are on, and never a page of another origin), takes only an absolute path, and
the importer takes only a GGUF file (checked by its magic) or a Hugging Face BERT folder.
What it writes stays inside the models folder, symlinks resolved.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from lmserve.api.deps import get_manager
from lmserve.api.errors import APIError
from lmserve.models import ModelManager
from lmserve.models.importer import ImportMode, ImportPlan, import_model, split_user_repo
from lmserve.models.paths import PathEscapeError

router = APIRouter()


class ImportRequest(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")
    path: str = Field(min_length=1, description="absolute path of a .gguf file or a "
                      "Hugging Face BERT folder on the machine lmserve runs on")
    mode: ImportMode = "copy"
    user_repo: str | None = Field(default=None, description="publisher/repo: the model's "
                                  "key (default: local/<name>)")


def _run_import(body: ImportRequest, root: Path,
                check_inside: Callable[[Path], Path]) -> ImportPlan:
    source = Path(body.path).expanduser()
    planned = import_model(source, root=root, mode=body.mode, user_repo=body.user_repo,
                           dry_run=True)
    check_inside(planned.destination)  # a symlinked publisher folder must not lead out
    return import_model(source, root=root, mode=body.mode, user_repo=body.user_repo)


@router.post("/api/v1/models/import")
async def import_from_path(body: ImportRequest,
                           manager: ModelManager = Depends(get_manager)) -> dict[str, Any]:
    library = manager.library
    if library is None:
        raise APIError(400, "This server has no model library to import into.")
    if not Path(body.path).expanduser().is_absolute():
        raise APIError(400, "path must be absolute: a path on the machine lmserve runs on.",
                       param="path", code="invalid_path")
    if body.user_repo is not None:
        try:
            split_user_repo(body.user_repo)
        except ValueError as exc:
            raise APIError(400, str(exc), param="user_repo", code="invalid_value") from None
    try:
        plan = await asyncio.to_thread(_run_import, body, library.root, library.ensure_inside)
    except FileNotFoundError as exc:
        raise APIError(400, str(exc), param="path", code="path_not_found") from None
    except FileExistsError as exc:
        raise APIError(409, str(exc), param="user_repo", code="model_exists") from None
    except OSError as exc:  # unreadable source, a hardlink across filesystems, a full disk
        raise APIError(400, f"Import failed: {exc}", param="path",
                       code="import_failed") from None
    except PathEscapeError as exc:
        raise APIError(400, str(exc), param="user_repo", code="path_escape") from None
    except ValueError as exc:  # not a GGUF file nor a BERT folder
        raise APIError(400, str(exc), param="path", code="not_a_model") from None
    entry = next((e for e in library.entries() if Path(e.path) == plan.destination), None)
    return {"key": entry.key if entry else None, "path": str(plan.destination),
            "action": plan.action, "message": plan.describe()}

"""Downloads from the Hugging Face Hub as background jobs.

POST /api/v1/models/download                    start one; returns a job id
GET  /api/v1/models/download/status/{job_id}    its progress and result
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from lmserve.api.deps import get_manager
from lmserve.api.errors import APIError, hub_error
from lmserve.models import ModelManager
from lmserve.models.download import (
    DownloadError,
    DownloadPlan,
    download,
    is_downloaded,
    parse_source,
    plan_download,
)

router = APIRouter()


@dataclass
class DownloadJob:
    id: str
    plan: DownloadPlan
    root: Path
    status: str = "downloading"  # downloading | completed | failed
    error: str | None = None
    paths: list[Path] = field(default_factory=list)
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None

    def bytes_done(self) -> int:
        """What is on disk so far: finished files and partial (.part) ones."""
        folder = self.plan.destination(self.root)
        total = 0
        for f in self.plan.files:
            for candidate in (folder / f.name, folder / f"{f.name}.part"):
                if candidate.exists():
                    total += candidate.stat().st_size
                    break
        return min(total, self.plan.total_size)

    def run(self) -> None:
        try:
            self.paths = download(self.plan, root=self.root, progress=False)
            self.status = "completed"
        except Exception as exc:  # reported through the status route
            self.status, self.error = "failed", str(exc)
        self.finished_at = time.time()

    def to_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.id,
            "status": self.status,
            "model_key": self.plan.model_key,
            "files": [f.path for f in self.plan.files],
            "total_size_bytes": self.plan.total_size,
            "downloaded_bytes": self.plan.total_size if self.status == "completed"
            else self.bytes_done(),
            "started_at": int(self.started_at),
            "finished_at": int(self.finished_at) if self.finished_at else None,
            "paths": [str(p) for p in self.paths],
            "error": self.error,
        }


class DownloadRequest(BaseModel):
    model_config = ConfigDict(strict=True)
    model: str = Field(min_length=1, description="publisher/repo[@quant] or a Hub URL")


def _jobs(request: Request) -> dict[str, DownloadJob]:
    if not hasattr(request.app.state, "download_jobs"):
        request.app.state.download_jobs = {}
    return request.app.state.download_jobs


@router.post("/api/v1/models/download")
async def start_download(body: DownloadRequest, request: Request,
                         manager: ModelManager = Depends(get_manager)) -> dict[str, Any]:
    if manager.library is None:
        raise APIError(400, "This server has no model library to download into.")
    source = parse_source(body.model)  # ValueError -> 400
    # a publisher or repo folder that is a symlink must not take the files elsewhere
    manager.library.ensure_inside(manager.library.root / source.publisher / source.repo)
    try:
        plan = await asyncio.to_thread(plan_download, source)
    except DownloadError as exc:
        raise hub_error(exc, param="model", unreachable_hint=(
            "Downloads need network access to the Hub; a local GGUF file can be placed in "
            f"the models folder ({manager.library.root}) as <publisher>/<repo>/<file>.gguf "
            "instead.")) from exc
    job = DownloadJob(secrets.token_hex(8), plan, manager.library.root)
    if is_downloaded(plan, job.root):
        job.status, job.finished_at = "completed", time.time()
        job.paths = [plan.destination(job.root) / f.name for f in plan.files]
    else:
        threading.Thread(target=job.run, name=f"download-{job.id}", daemon=True).start()
    _jobs(request)[job.id] = job
    return job.to_dict()


@router.get("/api/v1/models/download/status/{job_id}")
async def download_status(job_id: str, request: Request) -> dict[str, Any]:
    job = _jobs(request).get(job_id)
    if job is None:
        raise APIError(404, f"No download job '{job_id}'.", param="job_id")
    return job.to_dict()

"""Downloads from the Hugging Face Hub as background jobs.

POST /api/v1/models/download                    start one; returns a job id
GET  /api/v1/models/download/status/{job_id}    its progress and result
POST /api/v1/models/download/cancel/{job_id}    stop it; {"discard": true} also deletes
                                                the partial files

A cancelled download keeps its `.part` files, so starting the same download again (in
this process or after a restart) resumes from the bytes on disk.
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
    DownloadCancelled,
    DownloadError,
    DownloadPlan,
    StopSignal,
    download,
    is_downloaded,
    parse_source,
    part_path,
    plan_download,
)

router = APIRouter()


@dataclass
class DownloadJob:
    id: str
    plan: DownloadPlan
    root: Path
    status: str = "downloading"  # downloading | completed | failed | cancelled
    error: str | None = None
    paths: list[Path] = field(default_factory=list)
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    resumed_from: int = 0  # bytes already on disk when the job started
    discard: bool = False  # delete the partial files once stopped
    stop: StopSignal = field(default_factory=StopSignal)
    thread: threading.Thread | None = None

    def start(self) -> None:
        self.resumed_from = self.bytes_done()
        self.thread = threading.Thread(target=self.run, name=f"download-{self.id}", daemon=True)
        self.thread.start()

    def cancel(self, *, discard: bool, wait: float) -> None:
        """Stop the transfer and wait (up to `wait` seconds) until it has stopped."""
        self.discard = self.discard or discard
        self.stop.stop()
        if self.thread is not None:
            self.thread.join(wait)

    def discard_partial(self) -> None:
        folder = self.plan.destination(self.root)
        for f in self.plan.files:
            part_path(folder / f.name).unlink(missing_ok=True)

    def bytes_done(self) -> int:
        """What is on disk so far: finished files and partial (.part) ones."""
        folder = self.plan.destination(self.root)
        total = 0
        for f in self.plan.files:
            for candidate in (folder / f.name, part_path(folder / f.name)):
                if candidate.exists():
                    total += candidate.stat().st_size
                    break
        return min(total, self.plan.total_size)

    def run(self) -> None:
        try:
            self.paths = download(self.plan, root=self.root, progress=False, stop=self.stop)
            self.status = "completed"
        except DownloadCancelled:
            if self.discard:
                self.discard_partial()
            self.status = "cancelled"
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
            "resumed_from_bytes": self.resumed_from,
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
    jobs = _jobs(request)
    running = _running_into(jobs, plan, manager.library.root)
    if running is not None:  # two writers of one .part file would garble it
        return running.to_dict()
    job = DownloadJob(secrets.token_hex(8), plan, manager.library.root)
    if is_downloaded(plan, job.root):
        job.status, job.finished_at = "completed", time.time()
        job.paths = [plan.destination(job.root) / f.name for f in plan.files]
    else:
        job.start()
    jobs[job.id] = job
    return job.to_dict()


def _running_into(jobs: dict[str, DownloadJob], plan: DownloadPlan,
                  root: Path) -> DownloadJob | None:
    target = {plan.destination(root) / f.name for f in plan.files}
    for job in jobs.values():
        if job.status == "downloading" and target & {
                job.plan.destination(job.root) / f.name for f in job.plan.files}:
            return job
    return None


def _job(request: Request, job_id: str) -> DownloadJob:
    job = _jobs(request).get(job_id)
    if job is None:
        raise APIError(404, f"No download job '{job_id}'.", param="job_id")
    return job


@router.get("/api/v1/models/download/status/{job_id}")
async def download_status(job_id: str, request: Request) -> dict[str, Any]:
    return _job(request, job_id).to_dict()


class CancelRequest(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")
    discard: bool = Field(default=False, description="also delete the partial files, so a "
                          "later download starts from zero")


# A stop shuts the connection, so the transfer ends at once; this only bounds a stuck disk.
CANCEL_WAIT_SECONDS = 30.0


@router.post("/api/v1/models/download/cancel/{job_id}")
async def cancel_download(job_id: str, request: Request,
                          body: CancelRequest | None = None) -> dict[str, Any]:
    """Stop a running download, keeping what arrived for a later resume unless `discard`.
    On a job already stopped (cancelled or failed), `discard` deletes its partial files."""
    job = _job(request, job_id)
    discard = body is not None and body.discard
    if job.status == "completed":
        raise APIError(409, f"Download job '{job_id}' has completed; delete the model "
                       "instead.", param="job_id", code="download_completed")
    if job.status == "downloading":
        await asyncio.to_thread(job.cancel, discard=discard, wait=CANCEL_WAIT_SECONDS)
    elif discard:
        if _running_into(_jobs(request), job.plan, job.root) is not None:
            raise APIError(409, "A newer download is writing these files; cancel that one "
                           "instead.", param="job_id", code="download_running")
        job.discard_partial()
    return job.to_dict()

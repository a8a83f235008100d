"""A local stand-in for the Hugging Face Hub, for download tests that must not touch the network.

It serves the parts of the hub's HTTP API that `huggingface_hub` and lmserve's downloader use:

- `GET /api/models?search=&filter=gguf`: the listing of `list_models`, repos whose id contains
  the search text (case-insensitive), all of them tagged gguf.
- `GET /api/models/{repo}[/revision/{rev}]`: model info; `?blobs=true` adds sizes and LFS
  sha256 to the siblings, as the hub does for `files_metadata=True`.
- `GET /api/models/{repo}/tree/{rev}[/{path}]`: the file listing of `list_repo_tree`.
- `GET|HEAD /{repo}/resolve/{rev}/{path}`: a small file is served directly; an LFS file gets a
  302 to `{cdn_url}/lfs/{sha256}` with X-Repo-Commit, ETag, X-Linked-Etag and X-Linked-Size.
- `GET|HEAD /lfs/{sha256}` on a second server (another origin, as the hub's CDN is): the bytes,
  honoring `Range: bytes=N-` / `bytes=N-M` with 206.

Switches: `interrupt(after_bytes, times)` cuts the next transfers off after that many body
bytes (the connection closes short of Content-Length); `hold(after_bytes)` makes the next
transfer go silent after that many bytes until `release()` (a stalled connection, which
a client can only leave by closing it); `corrupt = True` flips a byte of every LFS body.
Every request is logged in `requests`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import re
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

GGUF_MAGIC = b"GGUF"


def make_gguf(size: int, seed: int = 0) -> bytes:
    """`size` bytes that start like a GGUF file; the rest is seeded random noise."""
    rng = random.Random(seed)
    return GGUF_MAGIC + rng.randbytes(max(size - len(GGUF_MAGIC), 0))


@dataclass
class HubFile:
    path: str
    data: bytes
    lfs: bool

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def blob_id(self) -> str:
        # Git's blob id: what the hub reports as `blobId` and the ETag of non-LFS files.
        return hashlib.sha1(b"blob %d\0" % len(self.data) + self.data).hexdigest()


@dataclass
class HubRepo:
    repo_id: str
    files: dict[str, HubFile] = field(default_factory=dict)

    @property
    def commit(self) -> str:
        return hashlib.sha1(self.repo_id.encode()).hexdigest()


@dataclass
class LoggedRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names


class FakeHub:
    def __init__(self) -> None:
        self.repos: dict[str, HubRepo] = {}
        self.requests: list[LoggedRequest] = []
        self.corrupt = False
        self.stopped = False
        self._interrupt_after: int | None = None
        self._interrupt_times = 0
        self._hold_after: int | None = None
        self._released = threading.Event()
        self._lock = threading.Lock()
        self._servers = [ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
                         for _ in range(2)]  # the hub, and its file storage (the CDN)
        for server in self._servers:
            server.daemon_threads = True

    @property
    def url(self) -> str:
        return _server_url(self._servers[0])

    @property
    def cdn_url(self) -> str:
        return _server_url(self._servers[1])

    def start(self) -> FakeHub:
        for server in self._servers:
            # A short poll interval keeps stop() quick; shutdown waits for the next poll.
            threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                             daemon=True).start()
        return self

    def stop(self) -> None:
        self.stopped = True  # kept-alive connections get no more answers either
        self._released.set()  # a held transfer must not keep its thread
        for server in self._servers:
            server.shutdown()
            server.server_close()

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def add_repo(self, repo_id: str, files: dict[str, bytes]) -> HubRepo:
        """Add a model repo; `.gguf` files are stored as LFS files, the rest as plain blobs."""
        repo = HubRepo(repo_id)
        for path, data in files.items():
            repo.files[path] = HubFile(path, data, lfs=path.endswith(".gguf"))
        self.repos[repo_id.lower()] = repo
        return repo

    def interrupt(self, after_bytes: int, times: int = 1) -> None:
        """Cut the next `times` file transfers off after `after_bytes` body bytes."""
        with self._lock:
            self._interrupt_after = after_bytes
            self._interrupt_times = times

    def hold(self, after_bytes: int) -> None:
        """The next file transfer sends `after_bytes` body bytes, then nothing until
        release()."""
        with self._lock:
            self._hold_after = after_bytes
            self._released.clear()

    def release(self) -> None:
        self._released.set()

    def take_hold(self) -> int | None:
        with self._lock:
            after, self._hold_after = self._hold_after, None
            return after

    def wait_released(self) -> None:
        self._released.wait()

    def take_interrupt(self) -> int | None:
        with self._lock:
            if self._interrupt_times <= 0:
                return None
            self._interrupt_times -= 1
            return self._interrupt_after

    def file_requests(self, name: str) -> list[LoggedRequest]:
        """The GETs that transferred bytes of the file called `name` (after the redirect)."""
        shas = {f.sha256 for r in self.repos.values() for f in r.files.values()
                if f.path.rsplit("/", 1)[-1] == name}
        return [r for r in self.requests
                if r.method == "GET" and r.path.startswith("/lfs/")
                and r.path.removeprefix("/lfs/") in shas]

    def find_blob(self, sha256: str) -> HubFile | None:
        for repo in self.repos.values():
            for f in repo.files.values():
                if f.lfs and f.sha256 == sha256:
                    return f
        return None


def _server_url(server: ThreadingHTTPServer) -> str:
    host, port = server.server_address[:2]
    return f"http://{host}:{port}"


_API_RE = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)"
                     r"(?:/revision/(?P<rev>[^/]+)|/tree/(?P<tree>[^/]+)(?:/(?P<sub>.+))?)?$")
_RESOLVE_RE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")
_LFS_RE = re.compile(r"^/lfs/(?P<sha>[0-9a-f]{64})$")
_RANGE_RE = re.compile(r"^bytes=(\d+)-(\d*)$")


def _handler_for(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(_HubHandler):
        pass

    Handler.hub = hub
    return Handler


class _HubHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive and Content-Length, as clients expect
    hub: FakeHub

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep test output quiet

    def do_HEAD(self) -> None:
        self._route(head=True)

    def do_GET(self) -> None:
        self._route(head=False)

    def _route(self, head: bool) -> None:
        if self.hub.stopped:
            self.close_connection = True
            return
        self.hub.requests.append(LoggedRequest(
            self.command, self.path, {k.lower(): v for k, v in self.headers.items()}))
        url = urlsplit(self.path)
        path = unquote(url.path)
        query = parse_qs(url.query)
        if path == "/api/models":
            self._search(query)
        elif m := _API_RE.match(path):
            self._api(m, query)
        elif m := _RESOLVE_RE.match(path):
            self._resolve(m, head)
        elif m := _LFS_RE.match(path):
            self._lfs(m.group("sha"), head)
        else:
            self._error(404, "Not Found")

    # --- API ---

    def _search(self, query: dict[str, list[str]]) -> None:
        text = query.get("search", [""])[0].lower()
        limit = int(query.get("limit", ["1000"])[0])
        found = [r for r in self.hub.repos.values() if text in r.repo_id.lower()]
        self._json([{"_id": r.commit[:24], "id": r.repo_id, "modelId": r.repo_id,
                     "downloads": 0, "likes": 0, "tags": ["gguf"], "private": False,
                     "library_name": "gguf", "createdAt": "2024-01-01T00:00:00.000Z"}
                    for r in found[:limit]])

    def _api(self, m: re.Match[str], query: dict[str, list[str]]) -> None:
        repo = self._repo(m.group("repo"))
        if repo is None:
            return
        rev = m.group("rev") or m.group("tree") or "main"
        if not self._revision_ok(repo, rev):
            return
        if m.group("tree") is not None:
            self._json(self._tree(repo, m.group("sub") or ""))
            return
        blobs = query.get("blobs", ["false"])[0].lower() in ("1", "true")
        self._json({
            "_id": repo.commit[:24], "id": repo.repo_id, "modelId": repo.repo_id,
            "author": repo.repo_id.split("/")[0], "sha": repo.commit, "private": False,
            "gated": False, "disabled": False, "downloads": 0, "likes": 0, "tags": ["gguf"],
            "library_name": "gguf", "lastModified": "2024-01-01T00:00:00.000Z",
            "createdAt": "2024-01-01T00:00:00.000Z",
            "siblings": [self._sibling(f, blobs) for f in repo.files.values()],
        })

    @staticmethod
    def _sibling(f: HubFile, blobs: bool) -> dict[str, object]:
        entry: dict[str, object] = {"rfilename": f.path}
        if blobs:
            entry.update(size=len(f.data), blobId=f.blob_id)
            if f.lfs:
                entry["lfs"] = {"sha256": f.sha256, "size": len(f.data), "pointerSize": 134}
        return entry

    @staticmethod
    def _tree(repo: HubRepo, sub: str) -> list[dict[str, object]]:
        prefix = f"{sub.rstrip('/')}/" if sub else ""
        entries: list[dict[str, object]] = []
        dirs: set[str] = set()
        for f in repo.files.values():
            if not f.path.startswith(prefix):
                continue
            rest = f.path[len(prefix):]
            if "/" in rest:
                dirs.add(prefix + rest.split("/", 1)[0])
                continue
            entry: dict[str, object] = {"type": "file", "oid": f.blob_id,
                                        "size": len(f.data), "path": f.path}
            if f.lfs:
                entry["lfs"] = {"oid": f.sha256, "size": len(f.data), "pointerSize": 134}
            entries.append(entry)
        entries += [{"type": "directory", "oid": "0" * 40, "size": 0, "path": d}
                    for d in sorted(dirs)]
        return entries

    # --- files ---

    def _resolve(self, m: re.Match[str], head: bool) -> None:
        repo = self._repo(m.group("repo"))
        if repo is None or not self._revision_ok(repo, m.group("rev")):
            return
        f = repo.files.get(m.group("path"))
        if f is None:
            self._error(404, "Entry not found", code="EntryNotFound")
            return
        headers = {"X-Repo-Commit": repo.commit, "ETag": f'"{f.blob_id}"',
                   "Accept-Ranges": "bytes"}
        if not f.lfs:
            self._send_body(200, f.data, headers, head)
            return
        # Like the hub: LFS files redirect to their storage, with the real size and hash.
        headers.update({"X-Linked-Etag": f'"{f.sha256}"', "X-Linked-Size": str(len(f.data)),
                        "Location": f"{self.hub.cdn_url}/lfs/{f.sha256}"})
        self._send_body(302, b"", headers, head)

    def _lfs(self, sha: str, head: bool) -> None:
        f = self.hub.find_blob(sha)
        if f is None:
            self._error(404, "Not Found")
            return
        data = bytearray(f.data)
        if self.hub.corrupt and data:
            data[len(data) // 2] ^= 0xFF
        headers = {"ETag": f'"{sha}"', "Accept-Ranges": "bytes",
                   "Content-Type": "application/octet-stream"}
        status, start, end = 200, 0, len(data)
        if rng := self.headers.get("Range"):
            m = _RANGE_RE.match(rng.strip())
            start = int(m.group(1)) if m else len(data)
            if start >= len(data):
                self._send_body(416, b"", {"Content-Range": f"bytes */{len(data)}"}, head)
                return
            end = min(int(m.group(2)) + 1, len(data)) if m.group(2) else len(data)
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{len(data)}"
        body = bytes(data[start:end])
        held = None if head else self.hub.take_hold()
        if held is not None and held < len(body):
            self._send_head(status, len(body), headers)
            self.wfile.write(body[:held])
            self.wfile.flush()
            self.hub.wait_released()
            with contextlib.suppress(OSError):  # the client may have given up meanwhile
                self.wfile.write(body[held:])
            return
        cut = None if head else self.hub.take_interrupt()
        if cut is None or cut >= len(body):
            self._send_body(status, body, headers, head)
            return
        self._send_head(status, len(body), headers)
        self.wfile.write(body[:cut])
        self.wfile.flush()
        # Close short of Content-Length: the client sees a dropped connection mid-body.
        self.connection.shutdown(socket.SHUT_WR)
        self.close_connection = True

    # --- helpers ---

    def _repo(self, repo_id: str) -> HubRepo | None:
        repo = self.hub.repos.get(repo_id.lower())
        if repo is None:
            self._error(404, "Repository not found", code="RepoNotFound")
        return repo

    def _revision_ok(self, repo: HubRepo, rev: str) -> bool:
        if rev in ("main", repo.commit):
            return True
        self._error(404, "Invalid rev id", code="RevisionNotFound")
        return False

    def _json(self, payload: object) -> None:
        self._send_body(200, json.dumps(payload).encode(),
                        {"Content-Type": "application/json"}, head=False)

    def _error(self, status: int, message: str, code: str | None = None) -> None:
        headers = {"Content-Type": "application/json", "X-Error-Message": message}
        if code:
            headers["X-Error-Code"] = code
        self._send_body(status, json.dumps({"error": message}).encode(), headers,
                        head=self.command == "HEAD")

    def _send_head(self, status: int, length: int, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(length))
        self.end_headers()

    def _send_body(self, status: int, body: bytes, headers: dict[str, str], head: bool) -> None:
        self._send_head(status, len(body), headers)
        if not head:
            self.wfile.write(body)

"""Download GGUF models from the Hugging Face Hub into the model library.

Files land in `<models>/<publisher>/<repo>/<file>.gguf`, the layout LM Studio uses. The repo
listing comes from `huggingface_hub`; the transfer itself is a plain HTTP stream so that it can
resume a `.part` file with a Range request, verify the sha256 the hub publishes for each LFS
file, show a rich progress bar, and stop at once when another thread asks it to (StopSignal).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import re
import shutil
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit

import httpx

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

DEFAULT_ENDPOINT = "https://huggingface.co"
PART_SUFFIX = ".part"
# Quantizations tried, in order, when the user names neither a file nor a quant.
DEFAULT_QUANT_PREFERENCE = ("Q4_K_M", "Q4_0", "Q4_1", "Q8_0")
# Seconds before retrying an interrupted transfer; doubled on each attempt.
RETRY_BACKOFF = 1.0
CHUNK_SIZE = 1 << 20

_HUB_HOSTS = {"huggingface.co", "www.huggingface.co", "hf.co"}
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_QUANT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_SHARD_RE = re.compile(r"^(?P<base>.+)-(?P<index>\d{5})-of-(?P<count>\d{5})\.gguf$", re.IGNORECASE)
# Namespaces of the hub's URL space that are not model publishers.
_RESERVED_NAMESPACES = {"datasets", "spaces", "docs", "api", "models", "collections", "blog"}


class DownloadError(Exception):
    """A download could not be planned or completed; the message is meant for the user."""


class HubUnreachableError(DownloadError):
    """The Hub cannot be reached (no network, offline mode); the caller says what to do."""


class NotOnHubError(DownloadError):
    """The hub has no such repository, revision or GGUF file: the asker's mistake."""


class ChecksumError(DownloadError):
    """The downloaded bytes do not match the sha256 the hub published."""


class DownloadCancelled(DownloadError):
    """The download was stopped on request; what arrived stays in the `.part` file."""


class StopSignal:
    """Lets another thread stop a download. The transfer checks it after every chunk, and
    stop() also shuts the open connection: a server gone silent cannot hold the stop back
    until the read timeout."""

    def __init__(self) -> None:
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._socket: socket.socket | None = None

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    def stop(self) -> None:
        self._stopped.set()
        with self._lock:
            if self._socket is not None:
                with contextlib.suppress(OSError):  # already closed: nothing to wake
                    self._socket.shutdown(socket.SHUT_RDWR)

    def check(self) -> None:
        if self.stopped:
            raise DownloadCancelled("The download was cancelled.")

    def wait(self, seconds: float) -> None:
        """Sleep before a retry, but not past a stop."""
        self._stopped.wait(seconds)
        self.check()

    @contextlib.contextmanager
    def watching(self, response: httpx.Response) -> Iterator[None]:
        """While the body is read, stop() shuts the response's connection."""
        stream = response.extensions.get("network_stream")
        sock = stream.get_extra_info("socket") if stream is not None else None
        with self._lock:
            self._socket = sock
        try:
            self.check()  # a stop that came before the socket was known
            yield
        finally:
            with self._lock:
                self._socket = None


@dataclass(frozen=True)
class Source:
    """What the user asked for: a repo, and optionally one file or one quantization."""

    publisher: str
    repo: str
    filename: str | None = None  # path inside the repo
    quant: str | None = None  # upper case, e.g. "Q4_K_M"
    revision: str = "main"

    @property
    def repo_id(self) -> str:
        return f"{self.publisher}/{self.repo}"


@dataclass(frozen=True)
class RemoteFile:
    path: str  # path inside the repo
    size: int
    sha256: str | None  # None only for files the hub does not keep in LFS

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class DownloadPlan:
    source: Source
    revision: str  # the commit the listing came from, so every part comes from one snapshot
    files: tuple[RemoteFile, ...]

    @property
    def repo_id(self) -> str:
        return self.source.repo_id

    @property
    def model_key(self) -> str:
        return self.source.repo_id.lower()

    @property
    def total_size(self) -> int:
        return sum(f.size for f in self.files)

    def destination(self, root: Path) -> Path:
        return Path(root) / self.source.publisher / self.source.repo


# --- parsing what the user typed ------------------------------------------------------------


def parse_source(spec: str) -> Source:
    """Parse `publisher/repo[@quant]`, a hub URL (huggingface.co or hf.co), or a file URL."""
    text = spec.strip()
    if not text:
        raise ValueError("Empty model source; expected publisher/repo or a Hugging Face URL.")
    if "://" in text or text.split("/", 1)[0].lower() in _HUB_HOSTS:
        return _parse_url(text, spec)
    repo_part, sep, quant = text.partition("@")
    segments = repo_part.split("/")
    if len(segments) != 2:
        raise ValueError(_bad_source(spec))
    publisher, repo = _check_repo(segments[0], segments[1], spec)
    if sep:
        if not _QUANT_RE.match(quant):
            raise ValueError(f"Invalid quantization {quant!r} in {spec!r}; expected e.g. "
                             "publisher/repo@Q4_K_M.")
        return Source(publisher, repo, quant=quant.upper())
    return Source(publisher, repo)


def _parse_url(text: str, spec: str) -> Source:
    url = urlsplit(text if "://" in text else f"https://{text}")
    if url.scheme not in ("http", "https") or (url.hostname or "").lower() not in _HUB_HOSTS:
        raise ValueError(_bad_source(spec))
    segments = [s for s in url.path.split("/") if s]
    if len(segments) < 2:
        raise ValueError(_bad_source(spec))
    publisher, repo = _check_repo(segments[0], segments[1], spec)
    rest = segments[2:]
    if not rest:
        return Source(publisher, repo)
    if rest[0] == "tree" and len(rest) == 2:
        return Source(publisher, repo, revision=rest[1])
    if rest[0] in ("blob", "resolve") and len(rest) >= 3:
        filename = "/".join(rest[2:])
        if not filename.lower().endswith(".gguf"):
            raise ValueError(f"{filename!r} is not a GGUF file; lmserve downloads .gguf models.")
        return Source(publisher, repo, filename=filename, revision=rest[1])
    raise ValueError(_bad_source(spec))


def _check_repo(publisher: str, repo: str, spec: str) -> tuple[str, str]:
    if publisher.lower() in _RESERVED_NAMESPACES:
        raise ValueError(f"{spec!r} is not a model repository; lmserve downloads models.")
    for name in (publisher, repo):
        if not _NAME_RE.match(name) or ".." in name or "--" in name:
            raise ValueError(_bad_source(spec))
    return publisher, repo


def _bad_source(spec: str) -> str:
    return (f"Cannot understand model source {spec!r}. Use publisher/repo, publisher/repo@quant "
            "(e.g. @q4_k_m), or a https://huggingface.co/publisher/repo[/blob/main/file.gguf] URL.")


# --- choosing the files -----------------------------------------------------------------------


def resolve_endpoint(endpoint: str | None = None) -> str:
    """The hub to talk to: the argument, else $HF_ENDPOINT, else huggingface.co."""
    return (endpoint or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def plan_download(source: Source, *, endpoint: str | None = None) -> DownloadPlan:
    """List the repo on the hub and pick the GGUF file(s) that `source` asks for."""
    base = resolve_endpoint(endpoint)
    repo_id, commit, files = list_repo(source, base)
    # The hub's spelling of the repo id names the library folder, however the user typed it.
    publisher, _, repo = repo_id.partition("/")
    if publisher and repo and repo_id.lower() == source.repo_id.lower():
        source = dataclasses.replace(source, publisher=publisher, repo=repo)
    return DownloadPlan(source=source, revision=commit or source.revision,
                        files=tuple(select_files(files, source)))


def list_repo(source: Source, base: str) -> tuple[str, str | None, list[RemoteFile]]:
    from huggingface_hub import HfApi
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    api = HfApi(endpoint=base, token=hf_token())
    try:
        info = api.model_info(source.repo_id, revision=source.revision, files_metadata=True,
                              timeout=30)
    except OfflineModeIsEnabled as e:
        raise HubUnreachableError(str(e)) from e
    except GatedRepoError as e:
        raise DownloadError(f"{source.repo_id} is gated: accept its terms on the hub and set "
                            "HF_TOKEN to a token of that account.") from e
    except RepositoryNotFoundError as e:
        raise NotOnHubError(f"Repository {source.repo_id} was not found on {base} (if it is "
                            "private, set HF_TOKEN).") from e
    except RevisionNotFoundError as e:
        raise NotOnHubError(f"Revision {source.revision!r} of {source.repo_id} was not "
                            "found.") from e
    except HfHubHTTPError as e:
        raise DownloadError(f"The hub at {base} answered with an error: {e}") from e
    except transport_errors() as e:
        raise offline_error(base, e) from e
    files = [
        RemoteFile(path=s.rfilename, size=s.lfs.size if s.lfs else (s.size or 0),
                   sha256=s.lfs.sha256 if s.lfs else None)
        for s in info.siblings or []
    ]
    return info.id or source.repo_id, info.sha, files


def transport_errors() -> tuple[type[BaseException], ...]:
    """Connection-level errors of whichever HTTP library huggingface_hub is built on."""
    errors: list[type[BaseException]] = [httpx.TransportError]
    with contextlib.suppress(ImportError):
        import httpx2

        errors.append(httpx2.TransportError)
    with contextlib.suppress(ImportError):
        import requests

        errors.append(requests.ConnectionError)
        errors.append(requests.Timeout)
    return tuple(errors)


def offline_error(base: str, error: BaseException) -> HubUnreachableError:
    reason = str(error) or type(error).__name__
    return HubUnreachableError(f"Cannot reach the Hugging Face Hub at {base}: {reason}.")


def select_files(files: list[RemoteFile], source: Source) -> list[RemoteFile]:
    """The GGUF file (all its parts if it is split) that `source` asks for."""
    ggufs = [f for f in files if f.path.lower().endswith(".gguf")]
    if not ggufs:
        raise NotOnHubError(f"{source.repo_id} has no GGUF files; lmserve runs GGUF models.")
    groups = group_shards(ggufs)
    if source.filename:
        return _complete(_named_group(groups, source), source)
    # Vision projectors are companions of a model, not a model to pick on their own.
    models = {k: g for k, g in groups.items() if "mmproj" not in k.rsplit("/", 1)[-1].lower()}
    if not models:
        raise NotOnHubError(f"{source.repo_id} has only projector (mmproj) GGUF files.")
    if source.quant:
        matches = [g for k, g in models.items() if _has_quant(k, source.quant)]
        if not matches:
            raise NotOnHubError(f"{source.repo_id} has no {source.quant} GGUF. Available: "
                                f"{', '.join(sorted(_names(models)))}.")
        return _complete(_smallest(matches), source)
    for quant in DEFAULT_QUANT_PREFERENCE:
        matches = [g for k, g in models.items() if _has_quant(k, quant)]
        if matches:
            return _complete(_smallest(matches), source)
    return _complete(_smallest(list(models.values())), source)


def group_shards(files: list[RemoteFile]) -> dict[str, list[RemoteFile]]:
    """Group the parts of split GGUFs (`x-00001-of-00003.gguf`) under one key `x`."""
    groups: dict[str, list[RemoteFile]] = {}
    for f in sorted(files, key=lambda f: f.path):
        m = _SHARD_RE.match(f.path)
        key = m.group("base") if m else f.path.removesuffix(".gguf").removesuffix(".GGUF")
        groups.setdefault(key, []).append(f)
    return groups


def _named_group(groups: dict[str, list[RemoteFile]], source: Source) -> list[RemoteFile]:
    wanted = source.filename or ""
    for group in groups.values():
        if any(f.path == wanted for f in group):
            return group
    # A bare file name is enough when it is unique in the repo.
    by_name = [g for g in groups.values() if any(f.name == wanted for f in g)]
    if len(by_name) == 1:
        return by_name[0]
    raise NotOnHubError(f"{source.repo_id} has no file {wanted!r}. GGUF files: "
                        f"{', '.join(sorted(f.path for g in groups.values() for f in g))}.")


def _complete(group: list[RemoteFile], source: Source) -> list[RemoteFile]:
    """Check that a split GGUF lists every one of its parts."""
    m = _SHARD_RE.match(group[0].path)
    if m and len(group) != int(m.group("count")):
        raise DownloadError(f"{source.repo_id} lists {len(group)} of the {int(m.group('count'))} "
                            f"parts of {m.group('base')}.gguf; cannot download a partial model.")
    return group


def _has_quant(key: str, quant: str) -> bool:
    # The quant must stand alone: Q4_K matches neither Q4_K_M nor IQ4_K.
    pattern = rf"(?<![A-Za-z0-9]){re.escape(quant)}(?![A-Za-z0-9]|_[A-Za-z0-9])"
    return re.search(pattern, key.rsplit("/", 1)[-1], re.IGNORECASE) is not None


def _smallest(groups: list[list[RemoteFile]]) -> list[RemoteFile]:
    return min(groups, key=lambda g: (sum(f.size for f in g), g[0].path))


def _names(groups: dict[str, list[RemoteFile]]) -> list[str]:
    return [g[0].path if len(g) == 1 else f"{k}.gguf ({len(g)} parts)" for k, g in groups.items()]


# --- fetching ---------------------------------------------------------------------------------


def download(plan: DownloadPlan, *, root: Path, progress: bool = True,
             endpoint: str | None = None, retries: int = 3,
             stop: StopSignal | None = None) -> list[Path]:
    """Fetch the plan's files into `<root>/<publisher>/<repo>/`; return their final paths.

    An interrupted or stopped transfer leaves `<file>.part`, which the next attempt (a retry
    here, or a later call) continues with a Range request. A file whose sha256 does not
    match the hub's is deleted and raises ChecksumError; `stop` raises DownloadCancelled.
    """
    stop = stop or StopSignal()
    base = resolve_endpoint(endpoint)
    dest = plan.destination(root)
    dest.mkdir(parents=True, exist_ok=True)
    targets = [(f, dest / f.name) for f in plan.files]
    pending = [(f, path) for f, path in targets if not _already_there(f, path)]
    _check_free_space(dest, pending)
    with _client() as client, _progress_bar(progress) as bar:
        for remote, path in pending:
            url = file_url(base, plan.repo_id, plan.revision, remote.path)
            _fetch_with_retries(client, url, remote, path, bar, base, retries, stop)
    return [path for _, path in targets]


def file_url(base: str, repo_id: str, revision: str, path: str) -> str:
    """The hub's download URL of one file at one revision."""
    return f"{base}/{repo_id}/resolve/{quote(revision, safe='')}/{quote(path)}"


def is_downloaded(plan: DownloadPlan, root: Path) -> bool:
    """Whether every file of the plan is already in the library."""
    dest = plan.destination(root)
    return all(_already_there(f, dest / f.name) for f in plan.files)


def _already_there(remote: RemoteFile, path: Path) -> bool:
    # Sizes are compared, not hashes: re-hashing gigabytes on every `get` would be slow, and
    # files only reach their final name after a verified download.
    return path.is_file() and path.stat().st_size == remote.size


def _check_free_space(dest: Path, pending: list[tuple[RemoteFile, Path]]) -> None:
    needed = sum(f.size - _part_size(part_path(p)) for f, p in pending)
    free = shutil.disk_usage(dest).free
    if needed > free:
        raise DownloadError(f"Not enough disk space in {dest}: {human_size(needed)} needed, "
                            f"{human_size(free)} free.")


def _client() -> httpx.Client:
    headers = {"User-Agent": "lmserve"}
    token = hf_token()
    if token:
        # httpx drops this header when the hub redirects to another host (the LFS CDN).
        headers["Authorization"] = f"Bearer {token}"
    timeout = httpx.Timeout(30.0, connect=15.0)
    return httpx.Client(headers=headers, timeout=timeout, follow_redirects=True)


def hf_token() -> str | None:
    token = os.environ.get("HF_TOKEN")
    if token:
        return token
    try:
        from huggingface_hub import get_token

        return get_token()
    except Exception:  # a broken token file must not block public downloads
        return None


class _RetryableStatus(Exception):
    """An HTTP status worth another attempt (rate limits, server errors)."""


def part_path(path: Path) -> Path:
    """Where the bytes of `path` gather until they are verified."""
    return path.with_name(path.name + PART_SUFFIX)


def _fetch_with_retries(client: httpx.Client, url: str, remote: RemoteFile, path: Path,
                        bar: _Bar, base: str, retries: int, stop: StopSignal) -> None:
    task = bar.add(remote.name, remote.size)
    attempt = 0
    while True:
        try:
            _fetch(client, url, remote, path, bar, task, stop)
            return
        except (httpx.TransportError, _RetryableStatus) as e:
            stop.check()  # a stop cuts the connection: that is no failure to retry
            if isinstance(e, httpx.ConnectError):
                # Nothing to resume against: report it rather than retry into the void.
                raise offline_error(base, e) from e
            if attempt >= retries:
                raise DownloadError(f"Downloading {remote.name} was interrupted ({e}); "
                                    f"{human_size(_part_size(part_path(path)))} kept in "
                                    f"{part_path(path)}. Run the command again to resume.") from e
            stop.wait(RETRY_BACKOFF * 2**attempt)
            attempt += 1


def _fetch(client: httpx.Client, url: str, remote: RemoteFile, path: Path, bar: _Bar,
           task: TaskID | None, stop: StopSignal) -> None:
    part = part_path(path)
    offset = _part_size(part)
    if offset > remote.size:
        part.unlink()  # longer than the file: not ours to continue
        offset = 0
    bar.reset(task, offset)
    if offset < remote.size:
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        with client.stream("GET", url, headers=headers) as response, stop.watching(response):
            offset = _check_response(response, remote, offset, part)
            bar.reset(task, offset)
            with open(part, "r+b" if offset else "wb") as out:
                out.seek(offset)
                out.truncate()
                # Unsized chunks, each on disk as it arrives: a cut, a stop or a killed
                # process leaves every byte read, and the size on disk is the progress.
                for chunk in response.iter_bytes():
                    out.write(chunk)
                    out.flush()
                    bar.advance(task, len(chunk))
                    stop.check()
    stop.check()
    _verify(part, remote)
    os.replace(part, path)  # the final name appears only once the bytes are verified


def _check_response(response: httpx.Response, remote: RemoteFile, offset: int,
                    part: Path) -> int:
    """Check the status and return the offset the body starts at."""
    status = response.status_code
    if status == 416 and offset:
        part.unlink(missing_ok=True)  # the hub's file changed under the part: start over
        raise _RetryableStatus(f"range from byte {offset} refused")
    if status in (401, 403):
        raise DownloadError(f"Access to {remote.path} was denied ({status}); if the repo is "
                            "gated or private, set HF_TOKEN.")
    if status == 404:
        raise DownloadError(f"{remote.path} was not found on the hub (404).")
    if status in (408, 429) or status >= 500:
        raise _RetryableStatus(f"HTTP {status}")
    if status == 206:
        start = _content_range_start(response.headers.get("Content-Range", ""))
        if start != offset:
            raise DownloadError(f"The hub answered a range from byte {offset} with bytes from "
                                f"{start}; cannot resume {remote.name}.")
        return offset
    if status == 200:
        return 0  # a server that ignores Range sends everything: rewrite from the start
    raise DownloadError(f"Unexpected HTTP {status} while downloading {remote.path}.")


def _content_range_start(value: str) -> int | None:
    m = re.match(r"bytes (\d+)-\d+/(\d+|\*)", value)
    return int(m.group(1)) if m else None


def _verify(part: Path, remote: RemoteFile) -> None:
    size = part.stat().st_size
    if size != remote.size:
        part.unlink()
        raise ChecksumError(f"{remote.name}: got {size} bytes, the hub lists {remote.size}; "
                            "the partial file was deleted.")
    if remote.sha256 is None:
        return
    digest = _sha256(part)
    if digest != remote.sha256.lower():
        part.unlink()
        raise ChecksumError(f"{remote.name} is corrupted: sha256 {digest} does not match the "
                            f"hub's {remote.sha256}; the file was deleted.")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_SIZE):
            h.update(chunk)
    return h.hexdigest()


def _part_size(part: Path) -> int:
    try:
        return part.stat().st_size
    except FileNotFoundError:
        return 0


def human_size(n: float) -> str:
    """Bytes in decimal units, as the hub shows them: 1.2 GB."""
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


# --- progress ---------------------------------------------------------------------------------


class _Bar:
    """A rich progress bar per file (bytes, speed, ETA), or nothing when progress is off."""

    def __init__(self, progress: Progress | None) -> None:
        self._progress = progress

    def add(self, name: str, total: int) -> TaskID | None:
        if self._progress is None:
            return None
        return self._progress.add_task(name, total=total)

    def reset(self, task: TaskID | None, completed: int) -> None:
        # A resumed transfer starts where the .part file ends, and speed counts only new bytes.
        if self._progress is not None and task is not None:
            self._progress.reset(task, completed=completed)

    def advance(self, task: TaskID | None, n: int) -> None:
        if self._progress is not None and task is not None:
            self._progress.advance(task, n)


@contextlib.contextmanager
def _progress_bar(enabled: bool) -> Iterator[_Bar]:
    if not enabled:
        yield _Bar(None)
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
               TransferSpeedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True)) as progress:
        yield _Bar(progress)

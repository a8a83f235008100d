"""Downloading GGUF models from a (local, fake) Hugging Face Hub into the model library."""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from lmserve.commands.get import get
from lmserve.models import download as dl
from lmserve.models.download import (
    ChecksumError,
    DownloadCancelled,
    DownloadError,
    RemoteFile,
    Source,
    StopSignal,
    download,
    parse_source,
    plan_download,
    select_files,
)
from tests.fakehub import FakeHub, make_gguf

REPO = "TheBloke/Tiny-GGUF"
Q4 = "tiny.Q4_K_M.gguf"
Q8 = "tiny.Q8_0.gguf"


@pytest.fixture()
def hub() -> Iterator[FakeHub]:
    with FakeHub() as hub:
        hub.add_repo(REPO, {
            "README.md": b"# Tiny\n",
            Q4: make_gguf(40_000, seed=1),
            Q8: make_gguf(70_000, seed=2),
            "tiny.F16.gguf": make_gguf(120_000, seed=3),
        })
        yield hub


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # Never fall back to huggingface.co or to a real token, and do not wait between retries.
    for name in ("HF_ENDPOINT", "HF_TOKEN", "HF_HUB_OFFLINE", "LMSERVE_MODELS_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(dl, "RETRY_BACKOFF", 0.0)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _data(hub: FakeHub, path: str, repo: str = REPO) -> bytes:
    return hub.repos[repo.lower()].files[path].data


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- parse_source -----------------------------------------------------------------------------


@pytest.mark.parametrize(("spec", "expected"), [
    ("bartowski/Qwen2.5-0.5B-Instruct-GGUF", Source("bartowski", "Qwen2.5-0.5B-Instruct-GGUF")),
    ("  pub/repo  ", Source("pub", "repo")),
    ("pub/repo@q4_k_m", Source("pub", "repo", quant="Q4_K_M")),
    ("pub/repo@Q8_0", Source("pub", "repo", quant="Q8_0")),
    ("https://huggingface.co/pub/repo", Source("pub", "repo")),
    ("https://huggingface.co/pub/repo/", Source("pub", "repo")),
    ("http://www.huggingface.co/pub/repo", Source("pub", "repo")),
    ("huggingface.co/pub/repo", Source("pub", "repo")),
    ("hf.co/pub/repo", Source("pub", "repo")),
    ("https://hf.co/pub/repo", Source("pub", "repo")),
    ("https://huggingface.co/pub/repo/tree/dev", Source("pub", "repo", revision="dev")),
    ("https://huggingface.co/pub/repo/blob/main/m-Q4_K_M.gguf",
     Source("pub", "repo", filename="m-Q4_K_M.gguf")),
    ("https://huggingface.co/pub/repo/resolve/main/m.gguf?download=true",
     Source("pub", "repo", filename="m.gguf")),
    ("hf.co/pub/repo/resolve/abc123/sub/dir/m.gguf",
     Source("pub", "repo", filename="sub/dir/m.gguf", revision="abc123")),
])
def test_parse_source_accepts(spec: str, expected: Source) -> None:
    assert parse_source(spec) == expected


@pytest.mark.parametrize("spec", [
    "",
    "repo",
    "pub/repo/extra",
    "pub/repo@",
    "pub/re po",
    "pub/repo@q4 k",
    "../repo",
    "https://example.com/pub/repo",
    "ftp://huggingface.co/pub/repo",
    "https://huggingface.co/pub",
    "https://huggingface.co/datasets/pub/data",
    "https://huggingface.co/spaces/pub/app",
    "https://huggingface.co/pub/repo/blob/main/config.json",
    "https://huggingface.co/pub/repo/discussions/3",
])
def test_parse_source_rejects(spec: str) -> None:
    with pytest.raises(ValueError, match=r"\S"):
        parse_source(spec)


def test_source_repo_id_and_model_key() -> None:
    source = parse_source("TheBloke/Tiny-GGUF@q4_k_m")
    assert source.repo_id == "TheBloke/Tiny-GGUF"
    plan = dl.DownloadPlan(source, "main", ())
    assert plan.model_key == "thebloke/tiny-gguf"


# --- choosing files ---------------------------------------------------------------------------


def _files(*names_and_sizes: tuple[str, int]) -> list[RemoteFile]:
    return [RemoteFile(name, size, "0" * 64) for name, size in names_and_sizes]


def _pick(files: list[RemoteFile], spec: str = "pub/repo") -> list[str]:
    return [f.path for f in select_files(files, parse_source(spec))]


LISTING = _files(("README.md", 10), ("m-Q2_K.gguf", 20), ("m-Q4_0.gguf", 40),
                 ("m-Q4_K_S.gguf", 41), ("m-Q4_K_M.gguf", 45), ("m-IQ4_XS.gguf", 38),
                 ("m-Q8_0.gguf", 80), ("m-f16.gguf", 160), ("mmproj-m-f16.gguf", 5))


def test_default_prefers_q4_k_m() -> None:
    assert _pick(LISTING) == ["m-Q4_K_M.gguf"]


def test_default_falls_back_to_q4_0_then_q4_1_then_q8_0_then_smallest() -> None:
    without = [f for f in LISTING if "Q4_K_M" not in f.path]
    assert _pick(without) == ["m-Q4_0.gguf"]
    q4_1 = _files(("m-Q4_1.gguf", 42), ("m-Q8_0.gguf", 80), ("m-Q2_K.gguf", 20))
    assert _pick(q4_1) == ["m-Q4_1.gguf"]
    assert _pick(_files(("m-Q8_0.gguf", 80), ("m-Q2_K.gguf", 20))) == ["m-Q8_0.gguf"]
    assert _pick(_files(("m-Q6_K.gguf", 60), ("m-Q5_K_M.gguf", 50), ("m-f16.gguf", 160),
                        ("mmproj-m-f16.gguf", 5))) == ["m-Q5_K_M.gguf"]


@pytest.mark.parametrize(("quant", "expected"), [
    ("q8_0", "m-Q8_0.gguf"),
    ("Q4_K_S", "m-Q4_K_S.gguf"),
    ("iq4_xs", "m-IQ4_XS.gguf"),
    ("F16", "m-f16.gguf"),
])
def test_requested_quant(quant: str, expected: str) -> None:
    assert _pick(LISTING, f"pub/repo@{quant}") == [expected]


def test_quant_must_match_a_whole_token() -> None:
    # Q4_K is a prefix of Q4_K_M and Q4_K_S but names neither; the error lists what exists.
    with pytest.raises(DownloadError, match="no Q4_K GGUF.*m-Q4_K_M.gguf"):
        _pick(LISTING, "pub/repo@q4_k")


def test_named_file_and_missing_file() -> None:
    assert _pick(LISTING, "hf.co/pub/repo/blob/main/m-f16.gguf") == ["m-f16.gguf"]
    assert _pick(LISTING, "hf.co/pub/repo/blob/main/mmproj-m-f16.gguf") == ["mmproj-m-f16.gguf"]
    with pytest.raises(DownloadError, match="no file 'nope.gguf'"):
        _pick(LISTING, "hf.co/pub/repo/blob/main/nope.gguf")


def test_split_gguf_fetches_every_part() -> None:
    files = _files(("big-Q4_K_M-00002-of-00003.gguf", 100), ("big-Q4_K_M-00001-of-00003.gguf", 100),
                   ("big-Q4_K_M-00003-of-00003.gguf", 50), ("big-Q8_0.gguf", 200))
    parts = [f"big-Q4_K_M-0000{i}-of-00003.gguf" for i in (1, 2, 3)]
    assert _pick(files) == parts
    assert _pick(files, "pub/repo@q4_k_m") == parts
    # Naming any one part still means the whole model.
    assert _pick(files, f"hf.co/pub/repo/blob/main/{parts[1]}") == parts


def test_split_gguf_in_a_subfolder() -> None:
    files = _files(("Q8_0/big-Q8_0-00001-of-00002.gguf", 100),
                   ("Q8_0/big-Q8_0-00002-of-00002.gguf", 100), ("big-Q2_K.gguf", 60))
    assert _pick(files, "pub/repo@q8_0") == ["Q8_0/big-Q8_0-00001-of-00002.gguf",
                                             "Q8_0/big-Q8_0-00002-of-00002.gguf"]


def test_incomplete_split_is_refused() -> None:
    files = _files(("big-Q4_K_M-00001-of-00003.gguf", 100), ("big-Q4_K_M-00003-of-00003.gguf", 50))
    with pytest.raises(DownloadError, match="2 of the 3 parts"):
        _pick(files)


def test_repo_without_gguf() -> None:
    with pytest.raises(DownloadError, match="no GGUF files"):
        _pick(_files(("model.safetensors", 100), ("config.json", 1)))


# --- planning against the hub -----------------------------------------------------------------


def test_plan_carries_sizes_sha256_and_the_commit(hub: FakeHub) -> None:
    plan = plan_download(parse_source(REPO.lower()), endpoint=hub.url)
    assert plan.repo_id == REPO  # the hub's spelling, whatever the user typed
    assert plan.destination(Path("lib")) == Path("lib/TheBloke/Tiny-GGUF")
    assert [f.path for f in plan.files] == [Q4]
    assert plan.files[0].size == 40_000
    assert plan.files[0].sha256 == _sha256(_data(hub, Q4))
    assert plan.revision == hub.repos[REPO.lower()].commit
    assert plan.model_key == "thebloke/tiny-gguf"


def test_plan_honors_hf_endpoint(hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", hub.url + "/")
    plan = plan_download(parse_source(f"{REPO}@Q8_0"))
    assert [f.path for f in plan.files] == [Q8]
    assert hub.requests[0].path.startswith(f"/api/models/{REPO}")


def test_plan_for_a_missing_repo(hub: FakeHub) -> None:
    with pytest.raises(DownloadError, match="nobody/nothing was not found"):
        plan_download(parse_source("nobody/nothing"), endpoint=hub.url)


# --- downloading ------------------------------------------------------------------------------


def test_download_into_the_library(hub: FakeHub, tmp_path: Path) -> None:
    plan = plan_download(parse_source(REPO), endpoint=hub.url)
    paths = download(plan, root=tmp_path, progress=False, endpoint=hub.url)
    target = tmp_path / "TheBloke" / "Tiny-GGUF" / Q4
    assert paths == [target]
    assert _sha256(target.read_bytes()) == plan.files[0].sha256
    assert target.read_bytes().startswith(b"GGUF")
    assert sorted(p.name for p in target.parent.iterdir()) == [Q4]  # no .part left behind
    assert len(hub.file_requests(Q4)) == 1 and not hub.file_requests(Q8)


def test_download_honors_hf_endpoint_and_token(hub: FakeHub, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    plan = plan_download(parse_source(REPO))
    download(plan, root=tmp_path, progress=False)
    resolves = [r for r in hub.requests if "/resolve/" in r.path]
    assert resolves and all(r.headers["authorization"] == "Bearer hf_secret" for r in resolves)
    # The token goes to the hub only, not to the storage host it redirects to.
    assert all("authorization" not in r.headers for r in hub.file_requests(Q4))


def test_download_split_model(tmp_path: Path) -> None:
    parts = {f"big-Q4_K_M-0000{i}-of-00003.gguf": make_gguf(9_000 + i, seed=i) for i in (1, 2, 3)}
    with FakeHub() as hub:
        hub.add_repo("pub/Big-GGUF", {**parts, "big-Q8_0.gguf": make_gguf(30_000)})
        plan = plan_download(parse_source("pub/Big-GGUF"), endpoint=hub.url)
        paths = download(plan, root=tmp_path, progress=False, endpoint=hub.url)
    assert [p.name for p in paths] == sorted(parts)
    for path in paths:
        assert path.parent == tmp_path / "pub" / "Big-GGUF"
        assert path.read_bytes() == parts[path.name]


def test_resume_after_an_interrupted_transfer(hub: FakeHub, tmp_path: Path) -> None:
    plan = plan_download(parse_source(REPO), endpoint=hub.url)
    data = _data(hub, Q4)
    target = tmp_path / "TheBloke" / "Tiny-GGUF" / Q4
    part = target.with_name(Q4 + ".part")

    hub.interrupt(after_bytes=12_345, times=1)
    with pytest.raises(DownloadError, match="interrupted.*again to resume"):
        download(plan, root=tmp_path, progress=False, endpoint=hub.url, retries=0)
    assert not target.exists()
    assert part.read_bytes() == data[:12_345]

    download(plan, root=tmp_path, progress=False, endpoint=hub.url)
    first, second = hub.file_requests(Q4)
    assert "range" not in first.headers
    assert second.headers["range"] == "bytes=12345-"
    assert _sha256(target.read_bytes()) == plan.files[0].sha256
    assert not part.exists()


def test_an_interrupted_transfer_is_retried_from_where_it_stopped(hub: FakeHub,
                                                                  tmp_path: Path) -> None:
    plan = plan_download(parse_source(REPO), endpoint=hub.url)
    hub.interrupt(after_bytes=10_000, times=2)
    (path,) = download(plan, root=tmp_path, progress=False, endpoint=hub.url)
    ranges = [r.headers.get("range") for r in hub.file_requests(Q4)]
    assert ranges == [None, "bytes=10000-", "bytes=20000-"]
    assert path.read_bytes() == _data(hub, Q4)


def test_a_stop_ends_a_stalled_transfer_and_keeps_its_bytes(hub: FakeHub,
                                                            tmp_path: Path) -> None:
    plan = plan_download(parse_source(REPO), endpoint=hub.url)
    part = tmp_path / "TheBloke" / "Tiny-GGUF" / (Q4 + ".part")
    hub.hold(after_bytes=15_000)  # then silence: only closing the connection ends the read
    stop = StopSignal()
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            download(plan, root=tmp_path, progress=False, endpoint=hub.url, stop=stop)
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    deadline = time.monotonic() + 60
    while not (part.exists() and part.stat().st_size == 15_000):
        assert time.monotonic() < deadline, "the held bytes never arrived"
        time.sleep(0.01)
    stop.stop()
    worker.join(20)  # the read timeout is 30 s: only the shut connection ends it sooner
    hub.release()
    assert not worker.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], DownloadCancelled)
    assert part.read_bytes() == _data(hub, Q4)[:15_000]
    assert len(hub.file_requests(Q4)) == 1  # no retry after a stop

    (path,) = download(plan, root=tmp_path, progress=False, endpoint=hub.url)
    assert hub.file_requests(Q4)[-1].headers["range"] == "bytes=15000-"
    assert path.read_bytes() == _data(hub, Q4)


def test_a_stale_part_longer_than_the_file_is_discarded(hub: FakeHub, tmp_path: Path) -> None:
    plan = plan_download(parse_source(REPO), endpoint=hub.url)
    dest = tmp_path / "TheBloke" / "Tiny-GGUF"
    dest.mkdir(parents=True)
    (dest / (Q4 + ".part")).write_bytes(b"x" * 50_000)
    (path,) = download(plan, root=tmp_path, progress=False, endpoint=hub.url)
    assert path.read_bytes() == _data(hub, Q4)
    assert "range" not in hub.file_requests(Q4)[0].headers


def test_a_complete_file_is_not_fetched_again(hub: FakeHub, tmp_path: Path) -> None:
    plan = plan_download(parse_source(REPO), endpoint=hub.url)
    download(plan, root=tmp_path, progress=False, endpoint=hub.url)
    assert dl.is_downloaded(plan, tmp_path)
    download(plan, root=tmp_path, progress=False, endpoint=hub.url)
    assert len(hub.file_requests(Q4)) == 1


def test_a_corrupted_body_is_deleted_and_raises(hub: FakeHub, tmp_path: Path) -> None:
    plan = plan_download(parse_source(REPO), endpoint=hub.url)
    hub.corrupt = True
    with pytest.raises(ChecksumError, match="corrupted: sha256"):
        download(plan, root=tmp_path, progress=False, endpoint=hub.url)
    dest = tmp_path / "TheBloke" / "Tiny-GGUF"
    assert list(dest.iterdir()) == []


def test_a_wrong_size_is_caught_before_hashing(hub: FakeHub, tmp_path: Path) -> None:
    plan = plan_download(parse_source(REPO), endpoint=hub.url)
    lying = dl.DownloadPlan(plan.source, plan.revision,
                            (RemoteFile(Q4, 40_001, plan.files[0].sha256),))
    with pytest.raises(ChecksumError, match="40000 bytes, the hub lists 40001"):
        download(lying, root=tmp_path, progress=False, endpoint=hub.url)
    assert list((tmp_path / "TheBloke" / "Tiny-GGUF").iterdir()) == []


def test_offline_plan_gives_a_clear_error() -> None:
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    with pytest.raises(DownloadError) as err:
        plan_download(parse_source(REPO), endpoint=endpoint)
    message = str(err.value)
    assert message.startswith(f"Cannot reach the Hugging Face Hub at {endpoint}: ")
    assert "lmserve" not in message  # the caller (CLI or API) says what to do


def test_offline_download_gives_a_clear_error(hub: FakeHub, tmp_path: Path) -> None:
    plan = plan_download(parse_source(REPO), endpoint=hub.url)
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    with pytest.raises(DownloadError, match=f"Cannot reach the Hugging Face Hub at {endpoint}: "):
        download(plan, root=tmp_path, progress=False, endpoint=endpoint)


def test_huggingface_hub_itself_can_download_from_the_fake_hub(hub: FakeHub,
                                                               tmp_path: Path) -> None:
    # Keeps the fake honest: the real client accepts its headers and redirects.
    from huggingface_hub import hf_hub_download

    path = hf_hub_download(REPO, Q8, local_dir=tmp_path, endpoint=hub.url)
    assert Path(path).read_bytes() == _data(hub, Q8)


# --- the `lmserve get` command ----------------------------------------------------------------


@pytest.fixture()
def run_get(hub: FakeHub, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    app = typer.Typer()
    app.command("get")(get)
    app.command("unused")(lambda: None)  # two commands, so `get` is a subcommand as in lmserve

    def run(*args: str, input: str | None = None):
        return CliRunner().invoke(app, ["get", *args], input=input)

    return run


def test_get_command_downloads(run_get, hub: FakeHub, tmp_path: Path) -> None:
    url = f"https://huggingface.co/{REPO.lower()}"
    result = run_get(url, "--models-dir", str(tmp_path), "--yes")
    assert result.exit_code == 0, result.output
    target = tmp_path / "TheBloke" / "Tiny-GGUF" / Q4
    assert f"{Q4}  40.0 KB" in result.output
    assert f"Saved to {target}" in result.output
    assert "Model key: thebloke/tiny-gguf" in result.output
    assert target.read_bytes() == _data(hub, Q4)

    again = run_get(REPO, "--models-dir", str(tmp_path), "--yes")
    assert again.exit_code == 0 and "Already downloaded" in again.output


def test_get_command_uses_lmserve_models_dir(run_get, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LMSERVE_MODELS_DIR", str(tmp_path / "lib"))
    result = run_get(f"{REPO}@q8_0", input="y\n")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "lib" / "TheBloke" / "Tiny-GGUF" / Q8).is_file()


def test_get_command_dry_run_and_decline(run_get, hub: FakeHub, tmp_path: Path) -> None:
    dry = run_get(REPO, "--models-dir", str(tmp_path), "--dry-run")
    assert dry.exit_code == 0 and Q4 in dry.output
    declined = run_get(REPO, "--models-dir", str(tmp_path), input="n\n")
    assert declined.exit_code == 1
    assert not hub.file_requests(Q4)
    assert not any(tmp_path.rglob("*.gguf*"))


def test_get_command_errors(run_get, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = run_get("not a model", "--models-dir", str(tmp_path))
    assert bad.exit_code == 2 and "Cannot understand model source" in bad.output
    missing = run_get(f"{REPO}@q3_k_s", "--models-dir", str(tmp_path))
    assert missing.exit_code == 1 and "no Q3_K_S GGUF" in missing.output
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    offline = run_get(REPO, "--models-dir", str(tmp_path), "--yes")
    assert offline.exit_code == 1
    assert "Cannot reach the Hugging Face Hub" in offline.output
    assert "lmserve import" in offline.output

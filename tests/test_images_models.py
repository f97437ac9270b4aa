"""Issue 22: projectors with their models. A catalogue size that sees pulls its projector too, from a local Hub,
with the same verification and resume as the model; the installed model loads with it and sees; the list and
fit count it; removing the model removes its projector."""

import dataclasses
from pathlib import Path
import threading

import pytest

from assistant.engine import LoadSettings, LocalEngine
from models import catalogue, download, library, registry
from models.catalogue import CatalogueEntry, Family, ProjectorFile
from tests.support.hub_server import hub, hub_env  # noqa: F401 - fixtures
from tests.support.tiny_vision import write_tiny_projector, write_tiny_vision_model

REPO = "acme/tiny-vision-GGUF"
MODEL_FILE = "tiny-vision-Q4_K_M.gguf"
PROJECTOR_FILE = "mmproj-tiny-vision-F16.gguf"


@pytest.fixture(scope="module")
def vision_files(tmp_path_factory):
    return write_tiny_vision_model(tmp_path_factory.mktemp("vision"))


@pytest.fixture
def seeing_size(hub, vision_files, monkeypatch):  # noqa: F811
    """A catalogue family with one size that sees, published on the local Hub with its projector."""
    model, projector = vision_files
    hub.add_repo(REPO, {MODEL_FILE: model, PROJECTOR_FILE: projector, "README.md": b"tiny"})
    template = catalogue.entries()[0]
    entry = dataclasses.replace(
        template, name="tinyvision-1m", label="Tiny Vision 1M", family="tinyvision", family_label="Tiny Vision",
        repo=REPO, file=MODEL_FILE, quant="Q4_K_M", quants=("Q4_K_M",), size_bytes=model.stat().st_size,
        size_approx=False, source="hub", sha256=None, base=False,
        projector=ProjectorFile(PROJECTOR_FILE, projector.stat().st_size, size_approx=False))
    families = (*catalogue._load(), Family("tinyvision", "Tiny Vision", "Apache 2.0", (entry,)))
    monkeypatch.setattr(catalogue, "_load", lambda: families)
    return entry


def test_a_size_that_sees_pulls_its_projector_verified_and_loads_seeing(seeing_size, hub, vision_files):  # noqa: F811
    reports = []
    model, result = library.pull("tinyvision-1m", on_progress=lambda *a: reports.append(a))
    assert model.projector is not None and model.projector.endswith(PROJECTOR_FILE)
    assert download.in_cache(model.projector) and open(model.projector, "rb").read() == vision_files[1].read_bytes()
    # One bar for both files: progress runs on past the model into its projector.
    total = vision_files[0].stat().st_size + vision_files[1].stat().st_size
    assert reports[-1][:2] == (total, total)
    assert registry.get("tinyvision-1m").projector == model.projector
    rows = {r.name: r for r in library.list_models(include_catalogue=False)}
    assert rows["tinyvision-1m"].sees_images and rows["tinyvision-1m"].projector_bytes > 0
    with LocalEngine() as engine:
        summary = engine.load("tinyvision-1m", LoadSettings(n_ctx=256, n_threads=1))
        assert summary.vision and summary.projector["path"] == model.projector
    # Removing the model removes its projector from the cache too.
    _entry, freed = library.remove("tinyvision-1m")
    assert freed == total and not Path(model.projector).exists() and not Path(model.path).exists()


def test_an_interrupted_projector_download_resumes_where_it_stopped(seeing_size, hub, vision_files,  # noqa: F811
                                                                    tmp_path):
    # A projector of a few megabytes (four 128-wide blocks), so the download can be stopped halfway.
    big = write_tiny_projector(tmp_path / "big.gguf", n_embd=128, n_ff=256, n_layers=4)
    hub.add_repo(REPO, {MODEL_FILE: vision_files[0], PROJECTOR_FILE: big})
    model_size = vision_files[0].stat().st_size
    cancel = threading.Event()

    def on_progress(done, total, rate, eta):
        if done >= model_size:
            hub.throttle_bps = 100e3  # the projector comes slowly enough to stop it halfway
        if done > model_size + 20_000:
            cancel.set()

    with pytest.raises(download.DownloadCancelled):
        library.pull("tinyvision-1m", on_progress=on_progress, cancel=cancel)
    (partial,) = download.partial_downloads()
    kept = partial.size
    assert 0 < kept < big.stat().st_size
    hub.throttle_bps = None
    model, _ = library.pull("tinyvision-1m")
    last = hub.file_requests(PROJECTOR_FILE)[-1]
    assert last.range == f"bytes={kept}-" and last.status == 206
    assert open(model.projector, "rb").read() == big.read_bytes()


def test_the_list_and_fit_count_a_catalogue_projector_before_it_is_downloaded(seeing_size):
    row = next(r for r in library.list_models() if r.name == "tinyvision-1m")
    assert not row.installed and row.sees_images and row.projector_bytes >= seeing_size.projector.size_bytes
    report = library.fit_report("tinyvision-1m")
    assert report.verdict.estimate.projector == row.projector_bytes and report.projector
    assert report.verdict.estimate.total == sum((report.verdict.estimate.weights, report.verdict.estimate.kv_cache,
                                                 report.verdict.estimate.compute, report.verdict.estimate.overhead,
                                                 report.verdict.estimate.projector))


def test_a_catalogue_entry_names_its_projector():
    blind = next(e for e in catalogue.entries() if e.projector is None)
    entry = CatalogueEntry(**{**dataclasses.asdict(blind), "projector": ProjectorFile("mmproj-F16.gguf", 1000),
                              "arch": blind.arch})
    assert entry.sees_images and not blind.sees_images
    assert any(e.sees_images for e in catalogue.entries())  # the 2026 families that see list their projector

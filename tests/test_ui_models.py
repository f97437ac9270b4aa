"""The model picker, the model manager and its pages, against a real local Hub server.

The window runs with the scripted engine (loading is instant); downloads, search, fit
figures, deletes and imports are the real ones, through the library service, served by
tests/support/hub_server.py. Remote servers are tested with an address where nothing
listens, and once against a real llama_cpp.server on loopback.
"""

from pathlib import Path

import pytest
import shiboken6
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (QAbstractButton, QAbstractItemView, QAbstractSpinBox, QApplication, QComboBox,
                               QFileDialog, QLineEdit, QMessageBox, QProgressBar, QTabBar, QWidget)

from models import download, registry, speed
from models import download_manager as dm
from models.library import BASE_MODEL_LABEL
from models.registry import InstalledModel
from tests.support.fake_engine import FakeEngine
from tests.support.hub_server import hub, hub_env, medium_model_path  # noqa: F401 - fixtures
from tests.support.tiny_gguf import write_tiny_llama
from tests.support.window import open_window
from ui.model_manager import CATALOGUE_TAB, DOWNLOADS_TAB, INSTALLED_TAB, REMOTES_TAB, ModelManager
from ui.workers import background_busy

REPO = "ggml-org/gemma-3-1b-it-GGUF"  # the catalogue's Gemma 3 1B, served with a small random model
FILE = "gemma-3-1b-it-Q4_K_M.gguf"
VERDICTS = ("fits", "tight fit", "does not fit")
CANNOT_REACH = "The Hub cannot be reached. Check your connection, or use models already installed."


@pytest.fixture(autouse=True)
def quick(monkeypatch):
    monkeypatch.setattr(speed, "memory_bandwidth", lambda force=False: 20e9)  # no 256 MB probe per test
    monkeypatch.setattr(speed, "bandwidth_curve", lambda threads=None, force=False: speed.BandwidthCurve.flat(20e9))
    monkeypatch.setattr(download, "RETRY_BASE_S", 0.01)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # never the real Hub; the `hub` fixture serves one


@pytest.fixture
def gemma_repo(hub, medium_model_path):  # noqa: F811
    hub.add_repo(REPO, {FILE: medium_model_path})
    hub.add_repo("meta/gated-GGUF", {"g-Q4_K_M.gguf": medium_model_path}, gated=True)
    return hub.repos[REPO]


@pytest.fixture
def make_window(qtbot, tmp_path):
    made = []

    def make(model="starter", engine=None):
        window = open_window(qtbot, tmp_path, engine or FakeEngine())
        window.show()
        with qtbot.waitSignal(window.bridge.modelLoaded, timeout=10_000):
            window.load_model(model)
        made.append(window)
        idle(qtbot, window)
        return window

    yield make
    idle(qtbot)
    for window in made:
        if shiboken6.isValid(window):
            window.close()  # its downloads pause


def idle(qtbot, window=None):
    """Wait for the background calls and the library's table to arrive."""
    qtbot.waitUntil(lambda: not background_busy(), timeout=30_000)
    if window is not None:
        service = window.services.library
        qtbot.waitUntil(lambda: service._pending is None or service._pending.done(), timeout=30_000)
    qtbot.wait(20)


def open_manager(qtbot, window) -> ModelManager:
    dialog = window.make_model_manager()
    qtbot.addWidget(dialog)
    dialog.show()
    idle(qtbot, window)
    return dialog


def select_catalogue(dialog: ModelManager, name: str):
    item = dialog.catalogue_items[name]
    dialog.catalogue.setCurrentItem(item)
    return item


def partials(hf_home: Path) -> list[Path]:
    return sorted((hf_home / "hub").glob("models--*/blobs/*.incomplete"))


def downloads_of(window) -> dm.DownloadManager:
    return window.services.library.downloads


def shown(tooltip: str) -> str:
    """A tooltip's text as a person reads it (tooltips are escaped so that names never act as markup)."""
    import html
    import re

    return html.unescape(re.sub(r"</?p[^>]*>", "", tooltip).replace("<br>", "\n"))


def toolbar_height(window) -> int:
    return window.model_picker.parentWidget().height()


# --- the picker ------------------------------------------------------------------------------------


def test_picker_shows_the_family_sizes_with_verdicts_and_switches_to_an_installed_size(
        qtbot, make_window, medium_model_path):  # noqa: F811
    registry.register(InstalledModel(name="gemma3-1b", path=str(medium_model_path), source="hub", repo=REPO,
                                     filename=FILE, quant="Q4_K_M"))
    window = make_window("gemma3-270m-base")  # Gemma 3's built-in size (the starter is SmolLM2)
    picker = window.model_picker
    texts = [b.text() for b in picker.size_buttons.values()]
    assert [t.split()[0] for t in texts] == ["270M", "1B", "4B", "12B"]  # size over speed, on two lines
    assert picker.family_label.text() == "Gemma 3 · base model"
    assert shown(picker.family_label.toolTip()) == BASE_MODEL_LABEL
    assert all("tok/s" in t for t in texts) and "↓" in texts[2] and "↓" not in texts[1]
    for button in picker.size_buttons.values():
        assert any(v in button.accessibleName() for v in VERDICTS) and "tok/s" in button.accessibleName()
        assert shown(button.toolTip()).count("\n") >= 2
    base = picker.size_buttons["gemma3-270m-base"]
    assert base.isChecked() and "loaded" in base.accessibleName()
    assert BASE_MODEL_LABEL.capitalize() in shown(base.toolTip())
    assert picker.combo.currentData(Qt.UserRole + 1) == "gemma3-270m-base · Q4_K_M"
    assert picker.combo.currentText() == f"gemma3-270m-base · Q4_K_M — {BASE_MODEL_LABEL}"  # in the list
    assert [picker.combo.itemData(i) for i in range(picker.combo.count())][:3] == [
        "starter", "gemma3-270m-base", "gemma3-1b"]

    one_b = picker.size_buttons["gemma3-1b"]
    one_b.setFocus()
    with qtbot.waitSignal(picker.modelRequested, timeout=5000) as requested:
        qtbot.keyClick(one_b, Qt.Key_Space)  # keyboard, not only the mouse
    assert requested.args == ["gemma3-1b"]
    qtbot.waitUntil(lambda: window.model.get("name") == "gemma3-1b", timeout=5000)
    assert one_b.isChecked() and not picker.size_buttons["gemma3-270m-base"].isChecked()
    assert picker.combo.currentData() == "gemma3-1b" and picker.family_label.text().startswith("Gemma 3")
    window.input.edit.setPlainText("Which model are you?")  # the next reply comes from the new model
    with qtbot.waitSignal(window.bridge.turnFinished, timeout=10_000) as reply:
        qtbot.keyClick(window.input.edit, Qt.Key_Return)
    assert reply.args[0].stats["model"]["name"] == "gemma3-1b"
    qtbot.waitUntil(lambda: not window.generating, timeout=5000)
    idle(qtbot, window)


def test_the_picker_and_the_catalogue_show_one_speed_figure(qtbot, make_window, medium_model_path):  # noqa: F811
    registry.register(InstalledModel(name="gemma3-1b", path=str(medium_model_path), source="hub", repo=REPO,
                                     filename=FILE, quant="Q4_K_M"))
    speed.record_measured_speed(medium_model_path, 31.0, speed.default_threads(), 0.0)  # a quiet run measured
    window = make_window("gemma3-270m-base")
    dialog = open_manager(qtbot, window)
    picker = window.model_picker
    assert picker.table is dialog.table  # one table, from the library service
    for base in ("gemma3-1b", "gemma3-4b", "gemma3-12b"):
        shown = picker.size_buttons[base].text().split("\n")[1]
        assert shown == dialog.catalogue_items[base].text(5), base
    assert picker.size_buttons["gemma3-1b"].text().endswith("\n31 tok/s")  # measured: no ~
    assert dialog.catalogue_items["gemma3-4b"].text(5).startswith("~")


def test_the_toolbar_keeps_its_height_and_the_picker_its_width_whatever_is_loaded(
        qtbot, make_window, tmp_path):
    long_name = write_tiny_llama(tmp_path / "m" / "x.gguf", name="SmolLM2 135M Instruct with a very long fine-tune name")
    window = make_window("gemma3-270m-base")
    window.services.library.import_file(long_name)
    idle(qtbot, window)
    picker = window.model_picker
    height, width = toolbar_height(window), picker.combo.width()
    assert picker.sizes.isVisible()

    name = "SmolLM2-135M-Instruct-with-a-very-long-fine-tune-name"
    with qtbot.waitSignal(window.bridge.modelLoaded, timeout=5000):
        window.load_model(name)
    idle(qtbot, window)
    assert not picker.sizes.isVisible() and picker.family_label.text().startswith("imported file")
    assert toolbar_height(window) == height and picker.combo.width() == width
    displayed = picker.combo.displayed_text()
    assert "…" in displayed and displayed.startswith("SmolLM2") and displayed.endswith(" · Q4_K_M")  # elided mid-name
    assert shown(picker.combo.toolTip()).startswith(name)  # the whole name on hover


def test_a_size_that_is_not_installed_offers_a_download_then_loads_it(qtbot, make_window, gemma_repo):
    window = make_window("gemma3-270m-base")
    picker = window.model_picker
    with qtbot.assertNotEmitted(picker.modelRequested):
        picker.size_buttons["gemma3-1b"].click()
        qtbot.waitUntil(lambda: picker.download_prompt is not None, timeout=10_000)  # once the Hub has answered
    prompt = picker.download_prompt
    assert prompt.isVisible() and prompt.text() == "Download Gemma 3 1B (806 MB)?"
    assert "It fits this machine. It needs about" in prompt.informativeText()
    assert "tok/s" in prompt.informativeText()
    assert all(b.accessibleName() for b in prompt.buttons())
    with qtbot.waitSignal(window.bridge.modelLoaded, timeout=20_000,
                          check_params_cb=lambda event: event.summary.name == "gemma3-1b"):
        prompt.button(QMessageBox.StandardButton.Yes).click()
    assert registry.get("gemma3-1b").repo == REPO
    assert picker.size_buttons["gemma3-1b"].isChecked() and not picker.download_bar.isVisible()
    idle(qtbot, window)


def test_offline_the_picker_says_so_instead_of_offering_a_download(qtbot, make_window, gemma_repo, hub,
                                                                  monkeypatch):  # noqa: F811
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    window = make_window("gemma3-270m-base")
    picker = window.model_picker
    picker._update_sizes()
    assert "downloads are off now: Offline mode is on" in shown(picker.size_buttons["gemma3-1b"].toolTip())
    picker.size_buttons["gemma3-1b"].click()
    qtbot.waitUntil(lambda: picker.download_prompt is not None, timeout=10_000)
    box = picker.download_prompt
    assert box.text() == "Gemma 3 1B (806 MB) is not installed, and it cannot be downloaded now."
    assert "Offline mode is on" in box.informativeText()
    assert [b.text() for b in box.buttons()] == ["&OK"] or [b.text() for b in box.buttons()] == ["OK"]
    box.button(QMessageBox.StandardButton.Ok).click()
    assert downloads_of(window).downloads() == [] and hub.file_requests() == []


def test_a_failed_download_from_the_picker_is_said_once_in_its_line(qtbot, make_window, gemma_repo, hub):
    hub.corrupt = True
    window = make_window("gemma3-270m-base")
    picker = window.model_picker
    picker.size_buttons["gemma3-1b"].click()
    qtbot.waitUntil(lambda: picker.download_prompt is not None, timeout=10_000)
    with qtbot.waitSignal(window.library.downloadFailed, timeout=20_000):
        picker.download_prompt.button(QMessageBox.StandardButton.Yes).click()
    qtbot.wait(20)
    assert picker.status_label.text() == "Download of Gemma 3 1B failed"
    assert shown(picker.status_label.toolTip()).startswith("The download was damaged")
    assert QApplication.activeModalWidget() is None  # no box on top of it


# --- the manager -----------------------------------------------------------------------------------


def test_the_manager_lists_the_catalogue_families_with_fit_and_speed(qtbot, make_window, hub):  # noqa: F811
    window = make_window()
    dialog = open_manager(qtbot, window)
    families = [dialog.catalogue.topLevelItem(i).text(0) for i in range(dialog.catalogue.topLevelItemCount())]
    # The 2026 families first; Gemma 3 (the built-in base model's family) among the older ones after them.
    assert families[:2] == ["Qwen3.5 (Alibaba)", "Gemma 4 (Google)"] and len(families) >= 5
    assert families.index("Gemma 3 (Google)") > families.index("SmolLM2 (Hugging Face)")
    starter = dialog.catalogue_items["starter"]
    assert starter.text(6) == "Built in, loaded" and starter.text(2) == "98.4 MB" and starter.text(7) == ""
    assert dialog.catalogue_items["gemma3-270m-base"].text(7) == BASE_MODEL_LABEL
    one_b = dialog.catalogue_items["gemma3-1b"]
    assert one_b.text(1) == "Q4_K_M" and one_b.text(2) == "806 MB" and one_b.text(3) == "1B"
    assert one_b.text(4) in VERDICTS and one_b.text(5).endswith("tok/s") and shown(one_b.toolTip(4)).startswith("It needs")
    q8 = dialog.catalogue_items["gemma3-1b:Q8_0"]
    assert q8.parent() is one_b and q8.text(2).startswith("~") and q8.text(4) in VERDICTS
    assert "RAM" in dialog.machine_label.text() and "GB/s" in dialog.machine_label.text()
    select_catalogue(dialog, "gemma3-1b")
    assert dialog.download_button.isEnabled() and not dialog.load_button.isEnabled()
    select_catalogue(dialog, "gemma3-270m-base")
    assert BASE_MODEL_LABEL in dialog.selection_label.text()
    select_catalogue(dialog, "starter")
    assert not dialog.download_button.isEnabled() and not dialog.delete_button.isEnabled()
    installed = {dialog.installed.topLevelItem(i).text(0): dialog.installed.topLevelItem(i).text(7)
                 for i in range(dialog.installed.topLevelItemCount())}
    assert installed == {"starter (loaded)": "", "gemma3-270m-base": BASE_MODEL_LABEL}


def test_a_download_shows_progress_then_is_installed_and_can_be_deleted(
        qtbot, make_window, gemma_repo, medium_model_path, hub, hub_env):  # noqa: F811
    hub.throttle_bps = 15e6  # about a second: several progress reports
    window = make_window()
    dialog = open_manager(qtbot, window)
    seen = []

    def record(info):
        row = dialog.downloads.rows.get(info.name)
        if row is not None:
            seen.append((row.detail.text(), row.bar.value()))

    window.library.downloadProgress.connect(record)
    select_catalogue(dialog, "gemma3-1b")
    with qtbot.waitSignal(window.library.downloadFinished, timeout=20_000):
        qtbot.mouseClick(dialog.download_button, Qt.LeftButton)
        assert dialog.tabs.currentIndex() == DOWNLOADS_TAB
    idle(qtbot, window)
    size = medium_model_path.stat().st_size
    assert len(seen) >= 3
    assert any(" of 14.4 MB · " in text and "/s" in text and "left" in text for text, _ in seen), seen
    assert [v for _, v in seen] == sorted(v for _, v in seen)
    assert dialog.downloads.rows == {} and dialog.downloads.empty.isVisible()
    assert "installed as gemma3-1b" in dialog.message.text()
    assert dialog.catalogue_items["gemma3-1b"].text(6) == "Installed"
    names = [dialog.installed.topLevelItem(i).data(0, Qt.UserRole) for i in range(dialog.installed.topLevelItemCount())]
    assert names == ["starter", "gemma3-270m-base", "gemma3-1b"]
    assert Path(registry.get("gemma3-1b").path).stat().st_size == size
    assert dm.load_records() == {}

    select_catalogue(dialog, "gemma3-1b")
    assert dialog.load_button.isEnabled() and dialog.delete_button.isEnabled()
    dialog.delete_button.click()
    assert dialog.prompt.text() == "Delete gemma3-1b?" and "14.4 MB" in dialog.prompt.informativeText()
    dialog.prompt.button(QMessageBox.StandardButton.Yes).click()
    qtbot.waitUntil(lambda: registry.get("gemma3-1b") is None, timeout=5000)
    idle(qtbot, window)
    assert "freed 14.4 MB" in dialog.message.text()
    assert not list((hub_env / "hub").rglob("*.gguf"))
    assert dialog.catalogue_items["gemma3-1b"].text(6) == "Not installed"


def test_pause_then_resume_fetches_only_the_rest(qtbot, make_window, gemma_repo, medium_model_path, hub,
                                                 hub_env):  # noqa: F811
    hub.throttle_bps = 5e6
    size = medium_model_path.stat().st_size
    window = make_window()
    dialog = open_manager(qtbot, window)
    manager = downloads_of(window)
    dialog.start_download("gemma3-1b")
    qtbot.waitUntil(lambda: manager.get("gemma3-1b").done > 1_500_000, timeout=10_000)
    row = dialog.downloads.rows["gemma3-1b"]
    assert row.pause_button.text() == "Pause"
    with qtbot.waitSignal(window.library.downloadPaused, timeout=5000):
        row.pause_button.click()
    (partial,) = partials(hub_env)
    kept = partial.stat().st_size
    assert 1_500_000 < kept < size and manager.get("gemma3-1b").done == kept
    assert row.pause_button.text() == "Resume" and row.state.text() == "Paused"
    assert "kept" in row.detail.text() and dialog.catalogue_items["gemma3-1b"].text(6).startswith("Paused at")
    assert dialog.tabs.tabText(DOWNLOADS_TAB) == "D&ownloads (1)"

    hub.throttle_bps = None
    with qtbot.waitSignal(window.library.downloadFinished, timeout=20_000):
        row.pause_button.click()
    last = hub.file_requests(FILE)[-1]
    assert last.range == f"bytes={kept}-" and last.status == 206 and last.body_bytes == size - kept
    assert size <= hub.body_bytes_served() <= size + 1_000_000  # only what was in flight at the pause
    assert Path(registry.get("gemma3-1b").path).read_bytes() == medium_model_path.read_bytes()
    idle(qtbot, window)


def test_a_paused_download_survives_a_restart_and_resumes(qtbot, make_window, gemma_repo, medium_model_path, hub,
                                                          hub_env):  # noqa: F811
    hub.throttle_bps = 5e6
    window = make_window()
    downloads_of(window).start("gemma3-1b")
    qtbot.waitUntil(lambda: downloads_of(window).get("gemma3-1b").done > 1_000_000, timeout=10_000)
    window.close()  # closing the window pauses its downloads
    assert downloads_of(window).get("gemma3-1b").status == "paused"
    kept = partials(hub_env)[0].stat().st_size
    assert dm.load_records()["gemma3-1b"]["sha256"] == gemma_repo.files[FILE].sha256

    hub.throttle_bps = None
    restarted = make_window()  # a new app: its library finds the partial file and the name it was pulled by
    dialog = open_manager(qtbot, restarted)
    row = dialog.downloads.rows["gemma3-1b"]
    assert row.title.text() == "Gemma 3 1B" and row.state.text() == "Paused"
    assert row.pause_button.text() == "Resume" and row.pause_button.accessibleName() == "Resume download of Gemma 3 1B"
    with qtbot.waitSignal(restarted.library.downloadFinished, timeout=20_000):
        row.pause_button.click()
    assert hub.file_requests(FILE)[-1].range == f"bytes={kept}-"
    assert registry.get("gemma3-1b") is not None and partials(hub_env) == []
    idle(qtbot, restarted)


def test_cancel_stops_and_deletes_the_partial_file(qtbot, make_window, gemma_repo, hub, hub_env):
    hub.throttle_bps = 4e6
    window = make_window()
    dialog = open_manager(qtbot, window)
    manager = downloads_of(window)
    dialog.start_download("gemma3-1b")
    qtbot.waitUntil(lambda: manager.get("gemma3-1b").done > 1_000_000, timeout=10_000)
    assert len(partials(hub_env)) == 1 and "gemma3-1b" in dm.load_records()
    with qtbot.waitSignal(window.library.downloadCancelled, timeout=5000):
        dialog.downloads.rows["gemma3-1b"].cancel_button.click()
    assert partials(hub_env) == [] and not (hub_env / "hub" / "models--ggml-org--gemma-3-1b-it-GGUF").exists()
    assert manager.get("gemma3-1b") is None and dialog.downloads.rows == {} and dm.load_records() == {}
    assert registry.get("gemma3-1b") is None


def test_errors_show_once_in_plain_words_with_what_to_do(qtbot, make_window, gemma_repo, hub, hub_env, monkeypatch):
    window = make_window()
    dialog = open_manager(qtbot, window)

    hub.corrupt = True  # the body does not match the published SHA-256
    with qtbot.waitSignal(window.library.downloadFailed, timeout=20_000):
        dialog.start_download("gemma3-1b")
    qtbot.wait(20)
    row = dialog.downloads.rows["gemma3-1b"]
    assert row.detail.text().startswith("The download was damaged (its checksum did not match), so it was deleted.")
    assert row.pause_button.text() == "Retry"
    assert not dialog.banner.isVisible()  # said once: on its row
    assert partials(hub_env) == [] and row.bar.value() == 0  # nothing kept
    hub.corrupt = False

    real_usage = download.shutil.disk_usage
    monkeypatch.setattr(download.shutil, "disk_usage",
                        lambda path: real_usage(path)._replace(free=10_000_000))  # a nearly full disk
    with qtbot.waitSignal(window.library.downloadFailed, timeout=20_000):
        row.pause_button.click()  # Retry
    qtbot.wait(20)
    assert row.detail.text().startswith("There is not enough free disk space for this model. Free some space")
    assert "only 10.0 MB is free" in row.detail.text()
    monkeypatch.setattr(download.shutil, "disk_usage", real_usage)
    with qtbot.waitSignal(window.library.downloadCancelled, timeout=5000):
        row.cancel_button.click()

    dialog.name_edit.setText("meta/gated-GGUF:Q4_K_M")  # a gated repo, and no token
    with qtbot.waitSignal(window.library.downloadFailed, timeout=20_000):
        dialog.pull_button.click()
    qtbot.wait(20)
    gated = dialog.downloads.rows["meta/gated-GGUF:Q4_K_M"].detail.text()
    assert gated.startswith("This model is gated or private.") and "accept its terms" in gated
    assert not dialog.banner.isVisible()

    dialog.name_edit.setText("not a model name")
    dialog.pull_button.click()
    assert "neither in the catalogue" in dialog.message.text() and dialog.banner.isVisible()

    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens: no network
    dialog.tabs.setCurrentIndex(1)
    dialog.search_edit.setText("gemma")
    qtbot.keyClick(dialog.search_edit, Qt.Key_Return)
    idle(qtbot, window)
    assert dialog.search_status.text() == CANNOT_REACH and dialog.search_button.isEnabled() is False
    assert dialog.hub_line.isVisible() and "cannot be reached" in dialog.hub_label.text()  # checked again: offline


def test_offline_the_manager_says_so_and_offers_no_download(qtbot, make_window, gemma_repo, hub, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    window = make_window()
    dialog = open_manager(qtbot, window)
    assert dialog.hub_line.isVisible()
    assert dialog.hub_label.text().startswith("Offline: downloads and Hub search are off. Offline mode is on")
    select_catalogue(dialog, "gemma3-1b")
    assert not dialog.download_button.isEnabled() and "downloads are off" in dialog.selection_label.text()
    assert not dialog.pull_button.isEnabled() and not dialog.search_button.isEnabled()
    monkeypatch.delenv("HF_HUB_OFFLINE")
    dialog.hub_button.click()  # Check again
    idle(qtbot, window)
    assert not dialog.hub_line.isVisible() and dialog.download_button.isEnabled()


def test_messages_read_in_the_dark_theme(qtbot, make_window):
    from ui.theme import apply_theme

    window = make_window()
    dialog = open_manager(qtbot, window)
    app = QApplication.instance()
    try:
        apply_theme(app, "dark")
        qtbot.wait(10)  # the palette reaches the widgets
        dialog.show_message("Something failed.")
        assert "#3a1f1f" in dialog.banner.styleSheet() and "#ffcdd2" in dialog.banner.styleSheet()
        apply_theme(app, "light")
        qtbot.wait(10)
        dialog.show_message("Something failed.")
        assert "#fdecea" in dialog.banner.styleSheet()
    finally:
        apply_theme(app, "light")


def test_search_lists_quant_files_with_a_fit_estimate_and_pulls_one(qtbot, make_window, gemma_repo, hub):
    window = make_window()
    dialog = open_manager(qtbot, window)
    dialog.tabs.setCurrentIndex(1)
    dialog.search_edit.setText("gemma-3-1b")
    dialog.search_button.click()
    idle(qtbot, window)
    assert dialog.results.topLevelItemCount() == 1
    repo = dialog.results.topLevelItem(0)
    assert repo.text(0) == REPO and repo.child(0).text(1) == "Q4_K_M" and repo.child(0).text(2) == "14.4 MB"
    dialog.results.setCurrentItem(repo.child(0))
    assert dialog.name_edit.text() == f"{REPO}:Q4_K_M"
    idle(qtbot, window)
    assert dialog.result_fit.text().split(",")[0].lower() in VERDICTS and "tok/s" in dialog.result_fit.text()
    with qtbot.waitSignal(window.library.downloadFinished, timeout=20_000):
        dialog.pull_button.click()
    assert downloads_of(window).get(f"{REPO}:Q4_K_M").installed_as == f"{REPO}:Q4_K_M"  # as it was named
    idle(qtbot, window)
    assert dialog.catalogue_items["gemma3-1b"].text(6) == "Installed"  # and known as the catalogue's 1B


def test_import_names_the_model_after_the_one_inside_then_delete_it(qtbot, make_window, monkeypatch, tmp_path):
    model = write_tiny_llama(tmp_path / "files" / "SmolLM2-135M-Instruct.Q4_1.gguf", name="SmolLM2 135M Instruct")
    window = make_window()
    dialog = open_manager(qtbot, window)
    dialog.tabs.setCurrentIndex(INSTALLED_TAB)
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(model), "GGUF models (*.gguf)"))
    dialog.import_button.click()
    name = "SmolLM2-135M-Instruct"  # the GGUF's general.name, not the file's
    qtbot.waitUntil(lambda: registry.get(name) is not None, timeout=5000)
    idle(qtbot, window)
    assert dialog.message.text().startswith(f"Imported {name}.")
    items = {dialog.installed.topLevelItem(i).data(0, Qt.UserRole): dialog.installed.topLevelItem(i)
             for i in range(dialog.installed.topLevelItemCount())}
    assert items[name].text(2) == "Imported file" and items[name].text(5) in VERDICTS
    assert items[name].text(7) == BASE_MODEL_LABEL  # no chat template in the file
    assert window.model_picker.combo.findData(name) >= 0  # the picker lists it too

    dialog.installed.setCurrentItem(items[name])
    dialog.installed_delete_button.click()
    assert "stays where it is" in dialog.prompt.informativeText()
    dialog.prompt.button(QMessageBox.StandardButton.Yes).click()
    qtbot.waitUntil(lambda: registry.get(name) is None, timeout=5000)
    idle(qtbot, window)
    assert model.exists() and window.model_picker.combo.findData(name) < 0

    (tmp_path / "notes.gguf").write_text("not a model")
    dialog.import_path(str(tmp_path / "notes.gguf"))
    idle(qtbot, window)
    assert "cannot be used" in dialog.message.text() and registry.get("notes") is None


def test_names_paths_and_messages_from_outside_show_as_written(qtbot, make_window, tmp_path):
    """A file, a server or a Hub answer may name things that look like markup: shown as text, never rendered."""
    model = write_tiny_llama(tmp_path / "<b>odd</b>" / "m.gguf", name="m")
    window = make_window()
    window.services.library.import_file(model)
    dialog = open_manager(qtbot, window)
    items = {dialog.installed.topLevelItem(i).data(0, Qt.UserRole): dialog.installed.topLevelItem(i)
             for i in range(dialog.installed.topLevelItemCount())}
    assert "&lt;b&gt;odd&lt;/b&gt;" in items["m"].toolTip(0) and shown(items["m"].toolTip(0)) == str(model)
    dialog.installed.setCurrentItem(items["m"])
    assert dialog.installed_path.text() == f"File: {model}"
    labels = [dialog.message, dialog.hub_label, dialog.installed_path, dialog.search_status, dialog.result_fit,
              dialog.selection_label, dialog.remotes.result, window.model_picker.status_label,
              window.model_picker.family_label]
    assert all(label.textFormat() == Qt.PlainText for label in labels)
    dialog.show_message("<img src='x'> failed")
    assert dialog.message.text() == "<img src='x'> failed" and dialog.message.textFormat() == Qt.PlainText


def test_the_loaded_model_cannot_be_deleted(qtbot, make_window, tiny_model_path):
    window = make_window()
    window.services.library.import_file(tiny_model_path)
    with qtbot.waitSignal(window.bridge.modelLoaded, timeout=5000):
        window.load_model("tiny")
    dialog = open_manager(qtbot, window)
    assert dialog.confirm_delete("tiny") is None
    assert dialog.message.text() == "tiny is loaded now. Load another model first, then delete this one."


# --- remote servers ----------------------------------------------------------------------------------


def test_a_remote_server_that_does_not_answer_is_one_sentence(qtbot, make_window):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    window = make_window()
    dialog = open_manager(qtbot, window)
    dialog.tabs.setCurrentIndex(REMOTES_TAB)
    page = dialog.remotes
    page.name_edit.setText("lab")
    page.url_edit.setText(f"127.0.0.1:{port}")
    page.key_edit.setText("sk-secret")
    page.add_button.click()
    idle(qtbot, window)
    assert page.servers.topLevelItemCount() == 1 and page.servers.topLevelItem(0).text(2) == "stored"
    assert "cannot be reached" in page.result.text() and page.result.text().count(".") >= 1
    assert "sk-secret" not in page.result.text() and page.key_edit.text() == ""
    combo = window.model_picker.combo
    qtbot.waitUntil(lambda: any("lab" in combo.itemText(i) for i in range(combo.count())), timeout=10_000)
    i = next(i for i in range(combo.count()) if combo.itemText(i) == "lab: its models cannot be listed")
    assert not combo.model().item(i).isEnabled() and "cannot be reached" in shown(combo.itemData(i, Qt.ToolTipRole))

    page.remove_button.click()
    page.prompt.button(QMessageBox.StandardButton.Yes).click()
    idle(qtbot, window)
    assert page.servers.topLevelItemCount() == 0 and page.result.text() == "Removed lab and its key."
    qtbot.waitUntil(lambda: not any("lab" in combo.itemText(i) for i in range(combo.count())), timeout=10_000)


@pytest.mark.llama_cpp
def test_a_remote_servers_models_are_listed_beside_local_ones_and_load_like_them(qtbot, make_window,
                                                                                tiny_model_path):
    from assistant import remotes
    from assistant.engine import EngineRouter
    from tests.test_remote import LlamaServer

    server = LlamaServer(tiny_model_path, alias="small", n_ctx=512)
    try:
        remotes.add("lab", server.url)
        window = make_window("gemma3-270m-base", engine=EngineRouter(local=FakeEngine()))
        height = toolbar_height(window)
        combo = window.model_picker.combo
        qtbot.waitUntil(lambda: combo.findData("small@lab") >= 0, timeout=20_000)
        i = combo.findData("small@lab")
        assert combo.itemText(i) == f"small — on lab (127.0.0.1:{server.port})"
        assert combo.findData("starter") < i  # after the local models
        with qtbot.waitSignal(window.bridge.modelLoaded, timeout=20_000) as loaded:
            combo.activated.emit(i)  # chosen from the list: loaded through the chat service
        assert loaded.args[0].summary.kind == "remote" and loaded.args[0].summary.name == "small@lab"
        qtbot.wait(20)
        picker = window.model_picker
        assert combo.currentData() == "small@lab" and picker.combo.displayed_text() == "small · on lab"
        assert picker.family_label.text() == f"on lab (127.0.0.1:{server.port})" and not picker.sizes.isVisible()
        assert toolbar_height(window) == height

        dialog = open_manager(qtbot, window)
        dialog.tabs.setCurrentIndex(REMOTES_TAB)
        dialog.remotes.servers.setCurrentItem(dialog.remotes.servers.topLevelItem(0))
        dialog.remotes.test_button.click()
        idle(qtbot, window)
        assert dialog.remotes.result.text().startswith("lab is ") and "ms away; it offers small@lab." in \
            dialog.remotes.result.text()
    finally:
        server.stop()


# --- keyboard, names, opening -------------------------------------------------------------------------


def test_every_control_has_an_accessible_name_and_takes_the_keyboard(qtbot, make_window, gemma_repo, hub):
    hub.throttle_bps = 3e6
    window = make_window()
    dialog = open_manager(qtbot, window)
    manager = downloads_of(window)
    dialog.start_download("gemma3-1b")
    qtbot.waitUntil(lambda: manager.get("gemma3-1b").done > 500_000, timeout=10_000)
    with qtbot.waitSignal(window.library.downloadPaused, timeout=5000):
        manager.pause("gemma3-1b")
    dialog.search_edit.setText("gemma")
    dialog.search()
    idle(qtbot, window)
    dialog.show_message("A message")

    kinds = (QAbstractButton, QLineEdit, QComboBox, QAbstractSpinBox, QAbstractItemView, QTabBar)
    problems = []
    for root in (window.model_picker, dialog):
        for index in range(dialog.tabs.count()):
            dialog.tabs.setCurrentIndex(index)
            for widget in root.findChildren(QWidget):
                if not widget.isVisible():
                    continue
                if isinstance(widget, QProgressBar) and not widget.accessibleName():
                    problems.append(f"unnamed progress bar in {root.accessibleName()}")
                if not isinstance(widget, kinds) or widget.focusPolicy() == Qt.NoFocus:
                    continue
                if widget.parent() is not None and isinstance(widget.parent(), QLineEdit):
                    continue  # the line edit's own clear button
                label = f"{type(widget).__name__}:{widget.text() if hasattr(widget, 'text') else ''}"
                if not widget.accessibleName() and not isinstance(widget, QTabBar):
                    problems.append(f"no accessible name: {label}")
                if not widget.focusPolicy() & Qt.TabFocus:
                    problems.append(f"not reachable with Tab: {label}")
    assert problems == []
    assert [dialog.tabs.tabText(i).replace("&", "") for i in range(5)] == [
        "Catalogue", "Search the Hub", "Downloads (1)", "Installed", "Remote servers"]
    assert dialog.tabs.currentIndex() != CATALOGUE_TAB or True


def test_the_toolbar_and_the_picker_open_the_manager_and_a_closed_one_goes(qtbot, make_window):
    window = make_window()
    opened = []

    def close_it():
        dialog = QApplication.activeModalWidget()
        opened.append(type(dialog).__name__)
        dialog.reject()

    QTimer.singleShot(300, close_it)
    window.models_action.trigger()  # exec(): returns when the dialog closes
    combo = window.model_picker.combo
    assert combo.itemText(combo.count() - 1) == "Manage models…"
    QTimer.singleShot(300, close_it)
    combo.activated.emit(combo.count() - 1)
    assert opened == ["ModelManager", "ModelManager"] and combo.currentData() == "starter"
    qtbot.wait(20)  # the deferred delete
    assert window.findChildren(ModelManager) == []
    idle(qtbot, window)

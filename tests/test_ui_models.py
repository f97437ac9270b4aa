"""The model picker, the model manager and the download controller, against a real local Hub server.

The window runs with the scripted engine (loading is instant); downloads, search,
fit figures, deletes and imports are the real ones, served by tests/support/hub_server.py.
"""

from pathlib import Path

import pytest
import shiboken6
from PySide6.QtCore import QSettings, Qt, QTimer
from PySide6.QtWidgets import (QAbstractButton, QAbstractItemView, QAbstractSpinBox, QApplication, QComboBox,
                               QFileDialog, QLineEdit, QMessageBox, QProgressBar, QTabBar, QWidget)

from assistant.history import HistoryStore
from models import download, registry, speed
from models.registry import InstalledModel
from tests.support.fake_engine import FakeEngine
from tests.support.hub_server import hub, hub_env, medium_model_path  # noqa: F401 - fixtures
from ui import downloads
from ui.downloads import DownloadController, background_busy
from tests.support.window import open_window
from ui.model_manager import ModelManager

REPO = "ggml-org/gemma-3-1b-it-GGUF"  # the catalogue's Gemma 3 1B, served with a small random model
FILE = "gemma-3-1b-it-Q4_K_M.gguf"
VERDICTS = ("fits", "tight fit", "does not fit")
CANNOT_REACH = "The Hub cannot be reached. Check your connection, or use models already installed."


@pytest.fixture(autouse=True)
def quick(monkeypatch):
    monkeypatch.setattr(speed, "memory_bandwidth", lambda force=False: 20e9)  # no 256 MB probe per test
    monkeypatch.setattr(download, "RETRY_BASE_S", 0.01)


@pytest.fixture
def gemma_repo(hub, medium_model_path):  # noqa: F811
    hub.add_repo(REPO, {FILE: medium_model_path})
    hub.add_repo("meta/gated-GGUF", {"g-Q4_K_M.gguf": medium_model_path}, gated=True)
    return hub.repos[REPO]


@pytest.fixture
def make_window(qtbot, tmp_path):
    made = []

    def make(model="starter"):
        window = open_window(qtbot, tmp_path, FakeEngine())
        window.show()
        with qtbot.waitSignal(window.bridge.modelLoaded, timeout=10_000):
            window.load_model(model)
        made.append(window)
        idle(qtbot)
        return window

    yield make
    idle(qtbot)
    for window in made:
        controller = getattr(window, "download_controller", None)
        if controller is not None:
            controller.shutdown()
        if shiboken6.isValid(window):
            window.close()


def idle(qtbot):
    """Wait for the fit and speed figures (and any other background call) to arrive."""
    qtbot.waitUntil(lambda: not background_busy(), timeout=30_000)
    qtbot.wait(10)


def open_manager(qtbot, window) -> ModelManager:
    dialog = ModelManager(window, parent=window)
    qtbot.addWidget(dialog)
    dialog.show()
    idle(qtbot)
    return dialog


def select_catalogue(dialog: ModelManager, name: str):
    item = dialog.catalogue_items[name]
    dialog.catalogue.setCurrentItem(item)
    return item


def partials(hf_home: Path) -> list[Path]:
    return sorted((hf_home / "hub").glob("models--*/blobs/*.incomplete"))


def wait_for(qtbot, controller, name, status, timeout=20_000):
    qtbot.waitUntil(lambda: (d := controller.get(name)) is not None and d.status == status, timeout=timeout)


# --- the picker ------------------------------------------------------------------------------------


def test_picker_shows_the_family_sizes_with_verdicts_and_switches_to_an_installed_size(
        qtbot, make_window, medium_model_path):  # noqa: F811
    registry.register(InstalledModel(name="gemma3-1b", path=str(medium_model_path), source="hub", repo=REPO,
                                     filename=FILE, quant="Q4_K_M"))
    window = make_window("gemma3-270m-base")  # Gemma 3's built-in size (the starter is SmolLM2)
    picker = window.model_picker
    texts = [b.text() for b in picker.size_buttons.values()]
    assert [t.split()[0] for t in texts] == ["270M", "1B", "4B", "12B"]  # size over speed, on two lines
    assert picker.family_label.text() == "Gemma 3"
    assert all("tok/s" in t for t in texts) and "↓" in texts[2] and "↓" not in texts[1]
    for button in picker.size_buttons.values():
        assert any(v in button.accessibleName() for v in VERDICTS) and "tok/s" in button.accessibleName()
        assert button.toolTip().count("\n") >= 2
    base = picker.size_buttons["gemma3-270m-base"]
    assert base.isChecked() and "loaded" in base.accessibleName()
    assert picker.combo.currentText() == "gemma3-270m-base · Q4_K_M"
    assert [picker.combo.itemData(i) for i in range(picker.combo.count())][:3] == [
        "starter", "gemma3-270m-base", "gemma3-1b"]

    one_b = picker.size_buttons["gemma3-1b"]
    one_b.setFocus()
    with qtbot.waitSignal(picker.modelRequested, timeout=5000) as requested:
        qtbot.keyClick(one_b, Qt.Key_Space)  # keyboard, not only the mouse
    assert requested.args == ["gemma3-1b"]
    qtbot.waitUntil(lambda: window.model.get("name") == "gemma3-1b", timeout=5000)
    assert one_b.isChecked() and not picker.size_buttons["gemma3-270m-base"].isChecked()
    assert picker.combo.currentData() == "gemma3-1b"
    window.input.edit.setPlainText("Which model are you?")  # the next reply comes from the new model
    with qtbot.waitSignal(window.bridge.turnFinished, timeout=10_000) as reply:
        qtbot.keyClick(window.input.edit, Qt.Key_Return)
    assert reply.args[0].stats["model"]["name"] == "gemma3-1b"
    qtbot.waitUntil(lambda: not window.generating, timeout=5000)
    idle(qtbot)


def test_a_size_that_is_not_installed_offers_a_download_then_loads_it(qtbot, make_window, gemma_repo):
    window = make_window("gemma3-270m-base")
    picker = window.model_picker
    with qtbot.assertNotEmitted(picker.modelRequested):
        picker.size_buttons["gemma3-1b"].click()
    prompt = picker.download_prompt
    assert prompt is not None and prompt.isVisible()
    assert prompt.text() == "Download Gemma 3 1B (806 MB)?"
    assert "It fits this machine. It needs about" in prompt.informativeText()
    assert "tok/s" in prompt.informativeText()
    assert all(b.accessibleName() for b in prompt.buttons())
    with qtbot.waitSignal(window.bridge.modelLoaded, timeout=20_000,
                          check_params_cb=lambda event: event.summary.name == "gemma3-1b"):
        prompt.button(QMessageBox.StandardButton.Yes).click()
    assert registry.get("gemma3-1b").repo == REPO
    assert picker.size_buttons["gemma3-1b"].isChecked() and not picker.download_bar.isVisible()
    idle(qtbot)


# --- the manager -----------------------------------------------------------------------------------


def test_the_manager_lists_the_catalogue_families_with_fit_and_speed(qtbot, make_window):
    window = make_window()
    dialog = open_manager(qtbot, window)
    families = [dialog.catalogue.topLevelItem(i).text(0) for i in range(dialog.catalogue.topLevelItemCount())]
    assert families[:2] == ["SmolLM2 (Hugging Face)", "Gemma 3 (Google)"] and len(families) >= 5
    starter = dialog.catalogue_items["starter"]
    assert starter.text(6) == "Built in, loaded" and starter.text(2) == "98.4 MB"
    one_b = dialog.catalogue_items["gemma3-1b"]
    assert one_b.text(1) == "Q4_K_M" and one_b.text(2) == "806 MB" and one_b.text(3) == "1B"
    assert one_b.text(4) in VERDICTS and one_b.text(5).endswith("tok/s") and one_b.toolTip(4).startswith("It needs")
    q8 = dialog.catalogue_items["gemma3-1b:Q8_0"]
    assert q8.parent() is one_b and q8.text(2).startswith("~") and q8.text(4) in VERDICTS
    assert "RAM" in dialog.machine_label.text() and "GB/s" in dialog.machine_label.text()
    select_catalogue(dialog, "gemma3-1b")
    assert dialog.download_button.isEnabled() and not dialog.load_button.isEnabled()
    select_catalogue(dialog, "starter")
    assert not dialog.download_button.isEnabled() and not dialog.delete_button.isEnabled()
    installed = [dialog.installed.topLevelItem(i).text(0) for i in range(dialog.installed.topLevelItemCount())]
    assert installed == ["starter (loaded)", "gemma3-270m-base"]


def test_a_download_shows_progress_then_is_installed_and_can_be_deleted(
        qtbot, make_window, gemma_repo, medium_model_path, hub, hub_env):  # noqa: F811
    hub.throttle_bps = 15e6  # about a second: several progress reports
    window = make_window()
    dialog = open_manager(qtbot, window)
    seen = []

    def record(name, *_figures):
        row = dialog.download_rows[name]
        seen.append((row.detail.text(), row.bar.value()))

    dialog.controller.progress.connect(record)
    select_catalogue(dialog, "gemma3-1b")
    with qtbot.waitSignal(dialog.controller.finished, timeout=20_000):
        qtbot.mouseClick(dialog.download_button, Qt.LeftButton)
        assert dialog.tabs.currentIndex() == 2 and "gemma3-1b" in dialog.download_rows
    idle(qtbot)
    size = medium_model_path.stat().st_size
    assert len(seen) >= 3
    assert any(" of 14.4 MB · " in text and "/s" in text and "left" in text for text, _ in seen), seen
    assert [v for _, v in seen] == sorted(v for _, v in seen)
    assert dialog.download_rows == {} and dialog.downloads_empty.isVisible()
    assert "installed as gemma3-1b" in dialog.message.text()
    assert dialog.catalogue_items["gemma3-1b"].text(6) == "Installed"
    names = [dialog.installed.topLevelItem(i).data(0, Qt.UserRole) for i in range(dialog.installed.topLevelItemCount())]
    assert names == ["starter", "gemma3-270m-base", "gemma3-1b"]
    assert Path(registry.get("gemma3-1b").path).stat().st_size == size
    assert downloads.load_records() == {}

    select_catalogue(dialog, "gemma3-1b")
    assert dialog.load_button.isEnabled() and dialog.delete_button.isEnabled()
    dialog.delete_button.click()
    assert dialog.prompt.text() == "Delete gemma3-1b?" and "14.4 MB" in dialog.prompt.informativeText()
    dialog.prompt.button(QMessageBox.StandardButton.Yes).click()
    qtbot.waitUntil(lambda: registry.get("gemma3-1b") is None, timeout=5000)
    idle(qtbot)
    assert "freed 14.4 MB" in dialog.message.text()
    assert not list((hub_env / "hub").rglob("*.gguf"))
    assert dialog.catalogue_items["gemma3-1b"].text(6) == "Not installed"


def test_pause_then_resume_fetches_only_the_rest(qtbot, make_window, gemma_repo, medium_model_path, hub,
                                                 hub_env):  # noqa: F811
    hub.throttle_bps = 5e6
    size = medium_model_path.stat().st_size
    window = make_window()
    dialog = open_manager(qtbot, window)
    c = dialog.controller
    dialog.start_download("gemma3-1b")
    qtbot.waitUntil(lambda: c.get("gemma3-1b").done > 1_500_000, timeout=10_000)
    row = dialog.download_rows["gemma3-1b"]
    assert row.pause_button.text() == "Pause"
    with qtbot.waitSignal(c.paused, timeout=5000):
        row.pause_button.click()
    (partial,) = partials(hub_env)
    kept = partial.stat().st_size
    assert 1_500_000 < kept < size and c.get("gemma3-1b").done == kept
    assert row.pause_button.text() == "Resume" and row.state.text() == "Paused"
    assert "kept" in row.detail.text() and dialog.catalogue_items["gemma3-1b"].text(6).startswith("Paused at")
    assert dialog.tabs.tabText(2) == "D&ownloads (1)"

    hub.throttle_bps = None
    with qtbot.waitSignal(c.finished, timeout=20_000):
        row.pause_button.click()
    last = hub.file_requests(FILE)[-1]
    assert last.range == f"bytes={kept}-" and last.status == 206 and last.body_bytes == size - kept
    assert size <= hub.body_bytes_served() <= size + 1_000_000  # only what was in flight at the pause
    assert Path(registry.get("gemma3-1b").path).read_bytes() == medium_model_path.read_bytes()
    idle(qtbot)


def test_a_paused_download_survives_a_restart_and_resumes(qtbot, make_window, gemma_repo, medium_model_path, hub,
                                                          hub_env):  # noqa: F811
    hub.throttle_bps = 5e6
    window = make_window()
    c = downloads.controller_for(window)
    c.start("gemma3-1b")
    qtbot.waitUntil(lambda: c.get("gemma3-1b").done > 1_000_000, timeout=10_000)
    with qtbot.waitSignal(c.paused, timeout=5000):
        window.close()  # closing the window pauses its downloads
    kept = partials(hub_env)[0].stat().st_size
    assert downloads.load_records()["gemma3-1b"]["sha256"] == gemma_repo.files[FILE].sha256

    # A new app: a fresh controller finds the partial file and the name it was pulled by.
    restarted = DownloadController()
    (d,) = restarted.downloads()
    assert (d.name, d.status, d.done, d.label) == ("gemma3-1b", "paused", kept, "Gemma 3 1B")
    hub.throttle_bps = None
    window2 = make_window()
    window2.download_controller = restarted
    dialog = open_manager(qtbot, window2)
    row = dialog.download_rows["gemma3-1b"]
    assert row.pause_button.text() == "Resume" and row.pause_button.accessibleName() == "Resume download of Gemma 3 1B"
    with qtbot.waitSignal(restarted.finished, timeout=20_000):
        row.pause_button.click()
    assert hub.file_requests(FILE)[-1].range == f"bytes={kept}-"
    assert registry.get("gemma3-1b") is not None and partials(hub_env) == []
    idle(qtbot)


def test_a_partial_file_from_another_run_is_found_by_its_hash(qtbot, gemma_repo, hub_env):
    """No record of it (the CLI was interrupted): the repo is a catalogue one, so it is offered for resume."""
    blobs = hub_env / "hub" / "models--ggml-org--gemma-3-1b-it-GGUF" / "blobs"
    blobs.mkdir(parents=True)
    sha = gemma_repo.files[FILE].sha256
    (blobs / f"{sha}.incomplete").write_bytes(gemma_repo.files[FILE].read(0, 1_000_000))
    c = DownloadController()
    (d,) = c.downloads()
    assert d.status == "paused" and d.found_in_cache and d.done == 1_000_000 and "Gemma 3" in d.label
    with qtbot.waitSignal(c.finished, timeout=20_000):
        c.resume(d.name)
    assert c.get(d.name).installed_as == "gemma3-1b"
    assert registry.get("gemma3-1b").sha256 == sha
    c.shutdown()


def test_cancel_stops_and_deletes_the_partial_file(qtbot, make_window, gemma_repo, hub, hub_env):
    hub.throttle_bps = 4e6
    window = make_window()
    dialog = open_manager(qtbot, window)
    c = dialog.controller
    dialog.start_download("gemma3-1b")
    qtbot.waitUntil(lambda: c.get("gemma3-1b").done > 1_000_000, timeout=10_000)
    assert len(partials(hub_env)) == 1 and "gemma3-1b" in downloads.load_records()
    with qtbot.waitSignal(c.cancelled, timeout=5000):
        dialog.download_rows["gemma3-1b"].cancel_button.click()
    assert partials(hub_env) == [] and not (hub_env / "hub" / "models--ggml-org--gemma-3-1b-it-GGUF").exists()
    assert c.get("gemma3-1b") is None and dialog.download_rows == {} and downloads.load_records() == {}
    assert registry.get("gemma3-1b") is None


def test_errors_show_in_plain_words_with_what_to_do(qtbot, make_window, gemma_repo, hub, hub_env, monkeypatch):
    window = make_window()
    dialog = open_manager(qtbot, window)
    c = dialog.controller

    hub.corrupt = True  # the body does not match the published SHA-256
    with qtbot.waitSignal(c.failed, timeout=20_000):
        dialog.start_download("gemma3-1b")
    row = dialog.download_rows["gemma3-1b"]
    assert row.detail.text().startswith("The download was damaged (its checksum did not match), so it was deleted.")
    assert row.pause_button.text() == "Retry"
    assert dialog.message.text().startswith("Gemma 3 1B: The download was damaged")
    assert partials(hub_env) == [] and dialog.banner.isVisible() and row.bar.value() == 0  # nothing kept
    hub.corrupt = False

    real_usage = download.shutil.disk_usage
    monkeypatch.setattr(download.shutil, "disk_usage",
                        lambda path: real_usage(path)._replace(free=10_000_000))  # a nearly full disk
    with qtbot.waitSignal(c.failed, timeout=20_000):
        row.pause_button.click()  # Retry
    assert row.detail.text().startswith("There is not enough free disk space for this model. Free some space")
    assert "only 10.0 MB is free" in row.detail.text()
    monkeypatch.setattr(download.shutil, "disk_usage", real_usage)
    with qtbot.waitSignal(c.cancelled, timeout=5000):
        row.cancel_button.click()

    dialog.name_edit.setText("meta/gated-GGUF:Q4_K_M")  # a gated repo, and no token
    with qtbot.waitSignal(c.failed, timeout=20_000):
        dialog.pull_button.click()
    assert dialog.message.text().startswith("meta/gated-GGUF:Q4_K_M: This model is gated or private.")
    assert "accept its terms" in dialog.message.text()

    dialog.name_edit.setText("not a model name")
    dialog.pull_button.click()
    assert "neither in the catalogue" in dialog.message.text()

    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens: no network
    dialog.tabs.setCurrentIndex(1)
    dialog.search_edit.setText("gemma")
    qtbot.keyClick(dialog.search_edit, Qt.Key_Return)
    idle(qtbot)
    assert dialog.message.text().startswith(CANNOT_REACH) and dialog.search_status.text() == CANNOT_REACH
    assert dialog.search_button.isEnabled()

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with qtbot.waitSignal(c.failed, timeout=10_000):
        dialog.start_download("qwen2.5-0.5b")
    assert dialog.download_rows["qwen2.5-0.5b"].detail.text().startswith(CANNOT_REACH)
    assert "Offline mode is on" in dialog.download_rows["qwen2.5-0.5b"].detail.text()


def test_search_lists_quant_files_with_a_fit_estimate_and_pulls_one(qtbot, make_window, gemma_repo, hub):
    window = make_window()
    dialog = open_manager(qtbot, window)
    dialog.tabs.setCurrentIndex(1)
    dialog.search_edit.setText("gemma-3-1b")
    dialog.search_button.click()
    idle(qtbot)
    assert dialog.results.topLevelItemCount() == 1
    repo = dialog.results.topLevelItem(0)
    assert repo.text(0) == REPO and repo.child(0).text(1) == "Q4_K_M" and repo.child(0).text(2) == "14.4 MB"
    dialog.results.setCurrentItem(repo.child(0))
    assert dialog.name_edit.text() == f"{REPO}:Q4_K_M"
    idle(qtbot)
    assert dialog.result_fit.text().split(",")[0].lower() in VERDICTS and "tok/s" in dialog.result_fit.text()
    with qtbot.waitSignal(dialog.controller.finished, timeout=20_000):
        dialog.pull_button.click()
    assert dialog.controller.get(f"{REPO}:Q4_K_M").installed_as == f"{REPO}:Q4_K_M"  # as it was named
    assert dialog.catalogue_items["gemma3-1b"].text(6) == "Installed"  # and known as the catalogue's 1B
    idle(qtbot)


def test_import_then_delete_a_local_file(qtbot, make_window, tiny_model_path, monkeypatch, tmp_path):
    window = make_window()
    dialog = open_manager(qtbot, window)
    dialog.tabs.setCurrentIndex(3)
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(tiny_model_path), "GGUF models (*.gguf)"))
    dialog.import_button.click()
    qtbot.waitUntil(lambda: registry.get("tiny") is not None, timeout=5000)
    idle(qtbot)
    assert dialog.message.text().startswith("Imported tiny.")
    items = {dialog.installed.topLevelItem(i).data(0, Qt.UserRole): dialog.installed.topLevelItem(i)
             for i in range(dialog.installed.topLevelItemCount())}
    assert items["tiny"].text(2) == "Imported file" and items["tiny"].text(5) in VERDICTS
    assert window.model_picker.combo.findData("tiny") >= 0  # the picker lists it too

    dialog.installed.setCurrentItem(items["tiny"])
    dialog.installed_delete_button.click()
    assert "stays where it is" in dialog.prompt.informativeText()
    dialog.prompt.button(QMessageBox.StandardButton.Yes).click()
    qtbot.waitUntil(lambda: registry.get("tiny") is None, timeout=5000)
    idle(qtbot)
    assert tiny_model_path.exists() and window.model_picker.combo.findData("tiny") < 0

    (tmp_path / "notes.gguf").write_text("not a model")
    dialog.import_path(str(tmp_path / "notes.gguf"))
    idle(qtbot)
    assert "cannot be used" in dialog.message.text() and registry.get("notes") is None


def test_every_control_has_an_accessible_name_and_takes_the_keyboard(qtbot, make_window, gemma_repo, hub):
    hub.throttle_bps = 3e6
    window = make_window()
    dialog = open_manager(qtbot, window)
    dialog.start_download("gemma3-1b")
    qtbot.waitUntil(lambda: dialog.controller.get("gemma3-1b").done > 500_000, timeout=10_000)
    with qtbot.waitSignal(dialog.controller.paused, timeout=5000):
        dialog.controller.pause("gemma3-1b")
    dialog.search_edit.setText("gemma")
    dialog.search()
    idle(qtbot)
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
    assert [dialog.tabs.tabText(i).replace("&", "") for i in range(4)] == [
        "Catalogue", "Search the Hub", "Downloads (1)", "Installed"]


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
    idle(qtbot)

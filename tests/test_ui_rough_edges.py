"""The window's rough edges a new user found (issue 21, item 3), one test each where a test can see it.

The window runs on the real services with the scripted engine; dialogs are driven the
way a person drives them (a click, or the keyboard), and what is checked is what shows.
"""

import ast
import inspect
from pathlib import Path

import pytest
import shiboken6
from PySide6.QtCore import QPoint, Qt, QTimer
from PySide6.QtGui import QFont, QFontDatabase, QFontMetrics
from PySide6.QtWidgets import QApplication, QPushButton, QTableWidget, QWidget

from assistant.history import HistoryStore
from models import download_manager as dm
from models import registry, speed
from models.registry import InstalledModel
from tests.support.fake_engine import FakeEngine
from tests.support.window import open_window
from ui.downloads import DownloadRow
from ui.settings_dialog import ConversationSettingsDialog
from ui.workers import background_busy

LONG = " ".join(f"word{i}" for i in range(400))


@pytest.fixture(autouse=True)
def quick(monkeypatch):
    monkeypatch.setattr(speed, "memory_bandwidth", lambda force=False: 20e9)
    monkeypatch.setattr(speed, "bandwidth_curve", lambda threads=None, force=False: speed.BandwidthCurve.flat(20e9))
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")


@pytest.fixture
def make_window(qtbot, tmp_path):
    made = []

    def make(engine=None, size=(1400, 900), model="starter"):
        window = open_window(qtbot, tmp_path, engine or FakeEngine())
        window.resize(*size)
        window.show()
        window.activateWindow()
        with qtbot.waitSignal(window.bridge.modelLoaded, timeout=10_000):
            window.load_model(model)
        made.append(window)
        return window

    yield make
    qtbot.waitUntil(lambda: not background_busy(), timeout=30_000)
    for window in made:
        if shiboken6.isValid(window):
            window.close()


def send(qtbot, window, text):
    with qtbot.waitSignal(window.bridge.turnFinished, timeout=10_000):
        window.input.edit.setPlainText(text)
        window.input._submit()
    qtbot.waitUntil(lambda: not window.generating, timeout=5000)


def in_dialog(qtbot, act):
    """Once a modal dialog is up, `act(dialog)` in it (a dialog's exec() blocks the test until then)."""
    def run():
        dialog = QApplication.activeModalWidget()
        if dialog is None:
            QTimer.singleShot(30, run)
            return
        act(dialog)
    QTimer.singleShot(50, run)


# --- 3: the header follows a rename -----------------------------------------------------------------------------


def test_renaming_the_open_chat_updates_its_header(qtbot, make_window, monkeypatch):
    window = make_window()
    send(qtbot, window, "Tell me about tides")
    monkeypatch.setattr(window.sidebar, "ask_title", lambda title: ("Tides, renamed", True))
    window.sidebar.rename(window.current_id)
    assert window.header.title.text() == "Tides, renamed"


# --- 2: a search result is drawn once ---------------------------------------------------------------------------


def test_a_clicked_search_result_is_drawn_once(qtbot, make_window):
    window = make_window()
    window.set_theme("light")  # the app's style sheet: a selected row's colours come from it
    send(qtbot, window, "zebras are striped")
    window.sidebar.search.setText("zebras")
    lst = window.sidebar.list
    qtbot.waitUntil(lambda: lst.count() == 1 and lst.itemWidget(lst.item(0)) is not None, timeout=3000)
    item = lst.item(0)
    qtbot.mouseClick(lst.viewport(), Qt.MouseButton.LeftButton, pos=lst.visualItemRect(item).center())
    assert item.isSelected()
    rect = lst.visualItemRect(item).adjusted(8, 6, -8, -6)
    label = lst.itemWidget(item)
    label.hide()  # what the row draws by itself, under its label: the selection's colour and nothing else
    qtbot.wait(20)
    image = lst.viewport().grab(rect).toImage()
    # The selection's colour (a gradient, top to bottom, in some styles) and no text: along each line
    # of pixels the colour does not jump, as it does at every letter's edge.
    jumps = [(x, y) for y in range(image.height()) for x in range(image.width() - 1)
             if max(abs(a - b) for a, b in zip(image.pixelColor(x, y).getRgb(), image.pixelColor(x + 1, y).getRgb(),
                                               strict=True)) > 24]
    assert jumps == [], "the row draws text of its own under the label"
    label.show()


# --- 4: a chat's own system prompt ------------------------------------------------------------------------------


def test_a_new_chat_keeps_the_system_prompt_set_in_its_header_by_keyboard(qtbot, make_window):
    window = make_window()
    window.defaults["system_prompt"] = "Be brief."
    window.new_chat()
    assert window.header.settings_button.isEnabled()  # "This chat" works before the first message too
    qtbot.waitUntil(window.isActiveWindow, timeout=5000)
    window.header.prompt.setFocus()

    def edit(dialog):
        assert isinstance(dialog, ConversationSettingsDialog)
        assert dialog.focusWidget() is dialog.system  # the editor is in front
        dialog.system.selectAll()
        qtbot.keyClicks(dialog.system, "Answer like a pirate.")
        for _ in range(40):  # Tab to OK, then Enter, as a person would
            focused = dialog.focusWidget()
            if isinstance(focused, QPushButton) and focused.text() == "OK":
                break
            qtbot.keyClick(focused, Qt.Key_Tab)
        qtbot.keyClick(dialog.focusWidget(), Qt.Key_Return)

    in_dialog(qtbot, edit)
    qtbot.keyClick(window.header.prompt, Qt.Key_Space)  # the prompt line is a button: Space (or a click) edits it
    assert window.header.prompt_text() == "System prompt: Answer like a pirate."
    assert window.history.count_conversations() == 0  # kept by the window until the first message

    send(qtbot, window, "Hello")
    conv = window.history.get_conversation(window.current_id)
    assert conv.system_prompt == "Answer like a pirate."
    assert window.services.chat.engine._current.messages[0] == {"role": "system", "content": "Answer like a pirate."}
    window.new_chat()  # the next new chat starts from the defaults again
    assert window.header.prompt_text() == "System prompt: Be brief."


def test_a_new_chats_own_settings_are_saved_with_it(qtbot, make_window):
    window = make_window()
    window.new_chat()
    dialog = window.make_conversation_settings_dialog()
    qtbot.addWidget(dialog)
    dialog.sampling.temperature.setValue(0.15)
    window.apply_conversation_settings(dialog)
    assert window.header.settings_button.text() == "This chat •"
    assert window.current_settings().temperature == pytest.approx(0.15)
    send(qtbot, window, "Hello")
    assert window.history.get_conversation(window.current_id).settings == {"temperature": pytest.approx(0.15)}


def test_an_existing_chats_system_prompt_is_edited_from_its_header(qtbot, make_window):
    window = make_window()
    send(qtbot, window, "Hello")
    assert window.header.prompt_text() == "No system prompt"

    def edit(dialog):
        dialog.system.setPlainText("You are a careful translator.")
        dialog.accept()

    in_dialog(qtbot, edit)
    qtbot.mouseClick(window.header.prompt, Qt.MouseButton.LeftButton)  # clicking "No system prompt" edits it
    conv_id = window.current_id
    assert window.history.get_conversation(conv_id).system_prompt == "You are a careful translator."
    assert window.header.prompt_text() == "System prompt: You are a careful translator."
    send(qtbot, window, "Bonjour")  # the next turn uses it
    assert window.services.chat.engine._current.messages[0]["content"] == "You are a careful translator."
    other = window.history.create_conversation(system_prompt=None)  # other chats keep theirs
    assert window.history.get_conversation(other.id).system_prompt is None


# --- 9: Ctrl+Q, the shortcuts list, plurals, the port field ---------------------------------------------------


def test_ctrl_q_quits(qtbot, make_window):
    window = make_window()
    qtbot.waitUntil(window.isActiveWindow, timeout=5000)
    window.input.edit.setFocus()
    qtbot.keyClick(window.input.edit, Qt.Key_Q, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=5000)
    assert "Ctrl+Q" in dict(window.SHORTCUTS)


def test_the_shortcuts_window_fits_its_content(qtbot, make_window):
    window = make_window()
    dialog = window.make_shortcuts_dialog()
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.wait(20)
    table = dialog.findChild(QTableWidget)
    assert not table.horizontalScrollBar().isVisible() and not table.verticalScrollBar().isVisible()
    for row in range(table.rowCount()):
        for column in range(2):
            text = table.item(row, column).text()
            assert table.columnWidth(column) >= QFontMetrics(table.font()).horizontalAdvance(text), text
    last = table.visualItemRect(table.item(table.rowCount() - 1, 1))
    assert last.bottom() <= table.viewport().height()  # every row shows


def test_one_search_hit_is_one_repo(qtbot, make_window):
    from types import SimpleNamespace

    window = make_window()
    dialog = window.make_model_manager()
    qtbot.addWidget(dialog)
    hit = SimpleNamespace(repo_id="someone/tiny-GGUF", gated=False, downloads=3, error=None, files=[])
    dialog._show_hits("tiny", [hit])
    assert dialog.search_status.text().startswith("1 repo matches “tiny”.")
    dialog._show_hits("tiny", [hit, hit])
    assert dialog.search_status.text().startswith("2 repos match “tiny”.")


def test_the_port_field_is_as_wide_as_a_port(qtbot, make_window):
    window = make_window()
    window.show_server_page()
    qtbot.wait(20)
    assert window.server_page.port.width() <= 160 and window.server_page.url.width() > 300


# --- 9: after Pause the focus stays on the button --------------------------------------------------------------


class _Manager:
    def __init__(self):
        self.info = dm.DownloadInfo("gemma3-1b", "Gemma 3 1B", status=dm.DOWNLOADING, done=10, total=100)
        self.paused = 0

    def get(self, name):
        return self.info

    def pause(self, name):
        self.paused += 1

    def resume(self, name):
        pass

    def cancel(self, name):
        pass


def test_after_pause_the_focus_stays_on_the_pause_button(qtbot):
    manager = _Manager()
    host = QWidget()
    qtbot.addWidget(host)
    row = DownloadRow(manager, manager.info)
    row.setParent(host)
    host.show()
    host.activateWindow()
    qtbot.waitUntil(host.isActiveWindow, timeout=5000)
    row.pause_button.setFocus()
    qtbot.keyClick(row.pause_button, Qt.Key_Space)  # Pause, by keyboard
    assert manager.paused == 1
    manager.info = dm.DownloadInfo("gemma3-1b", "Gemma 3 1B", status=dm.PAUSING, done=10, total=100)
    row.update_from(manager.info)
    assert QApplication.focusWidget() is row.pause_button and row.pause_button.text() == "Pausing…"
    qtbot.keyClick(row.pause_button, Qt.Key_Space)  # a second press waits for the pause: nothing else happens
    assert manager.paused == 1
    row.update_from(dm.DownloadInfo("gemma3-1b", "Gemma 3 1B", status=dm.PAUSED, done=10, total=100))
    assert QApplication.focusWidget() is row.pause_button and row.pause_button.text() == "Resume"


# --- 9: Download finished offers Load now --------------------------------------------------------------------


def test_a_finished_download_offers_load_now(qtbot, make_window):
    window = make_window()
    dialog = window.make_model_manager()
    qtbot.addWidget(dialog)
    dialog.show()
    done = dm.DownloadInfo("gemma3-1b", "Gemma 3 1B", status=dm.DONE, installed_as="gemma3-1b")
    loads = []
    dialog._load_model = loads.append
    dialog._download_finished(done)
    assert dialog.message_action.isVisible() and dialog.message_action.text() == "Load &now"
    dialog.message_action.click()
    assert loads == ["gemma3-1b"]

    picker = window.model_picker  # started elsewhere, finished while the window shows: the toolbar offers it too
    requested = []
    picker.modelRequested.connect(requested.append)
    picker._download_finished(done)
    assert picker.status_label.full_text == "Downloaded Gemma 3 1B" and picker.action_button.text() == "Load now"
    picker.action_button.click()
    assert requested == ["gemma3-1b"] and not picker.action_button.isVisible()


# --- 9: a model installed meanwhile is offered for benchmarks ------------------------------------------------


def test_the_benchmarks_list_a_newly_installed_model_without_refresh(qtbot, make_window, tmp_path):
    from tests.support.tiny_gguf import write_tiny_llama

    window = make_window()
    window.show_page(1)
    names = lambda: [window.stats_view.model_list.topLevelItem(i).text(0)  # noqa: E731
                     for i in range(window.stats_view.model_list.topLevelItemCount())]
    assert "tiny" not in names()
    model = write_tiny_llama(tmp_path / "tiny.gguf")
    with qtbot.waitSignal(window.library.installedChanged, timeout=10_000):
        window.services.library.import_file(model)
    assert "tiny" in names()


# --- 1: names whole at the Models window's default size ------------------------------------------------------


def test_model_names_are_whole_at_the_models_windows_default_size(qtbot, make_window, tmp_path):
    window = make_window()
    registry.register(InstalledModel(name="a-rather-long-model-name-imported-from-somewhere", source="local",
                                     path=str(tmp_path / "long.gguf")))
    window.services.library.refresh_installed()
    dialog = window.make_model_manager()
    qtbot.addWidget(dialog)
    dialog.show()  # no resize: the size it opens at
    qtbot.waitUntil(lambda: not background_busy(), timeout=30_000)
    qtbot.wait(50)
    for tree, names in ((dialog.catalogue, dialog.catalogue_items.values()), (dialog.installed, None)):
        header = tree.header()
        items = list(names) if names is not None else [tree.topLevelItem(i) for i in range(tree.topLevelItemCount())]
        for item in items:
            if item.parent() is not None and not item.parent().isExpanded():
                continue
            text = item.text(0)
            rect = tree.visualItemRect(item)
            width = header.sectionSize(0) - (rect.x() - header.sectionViewportPosition(0))
            needed = QFontMetrics(item.font(0)).horizontalAdvance(text) + (20 if not item.icon(0).isNull() else 0)
            assert width >= needed, f"{text!r} is cut at {width} px"
            assert item.toolTip(0), text  # and the whole name on hover


# --- 8: no glyph a font may lack ------------------------------------------------------------------------------


def test_the_base_model_notices_mark_is_an_icon_and_the_ui_uses_no_missing_glyph(qtbot):
    from ui.base_notice import BaseModelNotice

    notice = BaseModelNotice()
    qtbot.addWidget(notice)
    notice.show_for({"is_base": True, "name": "gemma3-270m-base"})
    assert "ⓘ" not in notice.label.text() and not notice.info_icon.pixmap().isNull()

    families = QFontDatabase.families()
    metrics = [QFontMetrics(QFont(family)) for family in families]
    missing = set()
    for path in sorted(Path("ui").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                      if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef)) and node.body
                      and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                for ch in set(node.value):
                    if ord(ch) > 127 and not 0xE000 <= ord(ch) <= 0xF8FF:  # private use: the search's own markers
                        if not any(m.inFontUcs4(ord(ch)) for m in metrics):
                            missing.add((path.name, ch))
    assert not missing, f"characters no installed font draws: {sorted(missing)}"


# --- 7: the base-model notice goes, the chat stays where it is ----------------------------------------------


def test_the_continue_button_stays_put_when_the_base_model_notice_goes(qtbot, make_window):
    window = make_window(FakeEngine(reply=LONG), size=(1000, 700))
    window.defaults["max_tokens"] = 120  # cut short: the reply offers Continue
    for text in ("First", "Second"):
        send(qtbot, window, text)
    window.base_notice.show_for({"is_base": True, "name": "gemma3-270m-base"})
    window.chat.show_newest()
    reply = window.chat.newest()
    assert reply.continue_button is not None
    positions = []

    def settled():  # the replies' last renders and the view's own moves are done
        positions.append(reply.continue_button.mapTo(window, QPoint(0, 0)))
        return len(positions) > 3 and len(set(positions[-3:])) == 1

    qtbot.waitUntil(settled, timeout=5000)
    assert reply.continue_button.isVisible()
    before = positions[-1]
    window.base_notice.show_for({"name": "starter"})  # an instruction model loaded: the notice goes
    qtbot.wait(50)
    assert window.base_notice.isHidden()
    assert reply.continue_button.mapTo(window, QPoint(0, 0)) == before


# --- 5: Compare at 700x500 -------------------------------------------------------------------------------------


def test_compares_answers_stack_in_a_narrow_window_and_never_scroll_sideways(qtbot, make_window):
    window = make_window(size=(700, 500))
    window.show_compare()
    page = window.compare_page
    page._show_layout(["starter", "gemma3-270m-base"], ["Why is the sky blue?"], [None])
    scroll = page.answers_scroll
    qtbot.waitUntil(lambda: scroll.verticalScrollBar().maximum() > 0, timeout=3000)  # laid out
    assert page.stacked and scroll.horizontalScrollBarPolicy() == Qt.ScrollBarPolicy.ScrollBarAlwaysOff
    first, second = page.columns
    assert second.y() > first.y() and second.width() == first.width()
    assert first.width() <= scroll.viewport().width()  # each answer has the page's width, nothing off to the side
    bar = scroll.verticalScrollBar()
    assert bar.maximum() >= second.y() - first.y() - 40  # the second answer is a scroll away, down
    bar.setValue(bar.maximum())
    qtbot.wait(20)
    top = second.mapTo(scroll.viewport(), QPoint(0, 0)).y()
    assert top < scroll.viewport().height() and top + second.height() > 0
    assert first.figures_per_row == 1 or first.width() >= 430

    window.resize(1400, 900)
    qtbot.wait(50)
    assert not page.stacked and first.y() == second.y() and first.figures_per_row == 2


def test_compares_summary_says_when_both_runs_were_on_a_busy_cpu(qtbot, make_window, monkeypatch):
    monkeypatch.setattr("assistant.busy.os.cpu_count", lambda: 2)
    window = make_window()
    history: HistoryStore = window.services.history

    def stats(name, tps, busy):
        return {"model": {"name": name, "file": f"/m/{name}.gguf", "quant": "Q4_K_M", "size_bytes": 98_000_000 if
                          name == "starter" else 800_000_000}, "gen_tps": tps, "n_threads": 2,
                "memory": {"rss_peak_bytes": 300_000_000}, "transport": {"runner_pid": 1, "cpu_other_busy": busy}}

    c = history.create_comparison("Why?", settings={"seed": 1})
    history.add_comparison_answer(c.id, 0, "starter", "a", stats=stats("starter", 2.5, 0.9))
    history.add_comparison_answer(c.id, 1, "gemma3-1b", "b", stats=stats("gemma3-1b", 72.0, 0.9))
    window.show_compare()
    page = window.compare_page
    page.show_saved(c.id)
    assert "both runs were on a busy CPU: run again for a speed comparison" in page.summary.text()
    assert "faster" not in page.summary.text() and "slower" not in page.summary.text()
    assert [col.figure_labels["gen_tps"].text() for col in page.columns] == ["2.5 tok/s (busy CPU)",
                                                                           "72 tok/s (busy CPU)"]


# --- the window writes nothing to the history itself ----------------------------------------------------------


def test_no_window_module_calls_a_history_write(qtbot, make_window):
    """Every write goes through the core: prompt sets (PromptSetService), notices, settings, prompts."""
    writes = {name for name, fn in inspect.getmembers(HistoryStore, inspect.isfunction)
              if "self._write()" in inspect.getsource(fn) and not name.startswith("_")} | {"dismiss_notice"}
    assert {"save_prompt_set", "delete_prompt_set", "update_conversation", "rename"} <= writes
    calls = []
    for path in sorted(Path("ui").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr in writes and isinstance(node.value, ast.Attribute) \
                    and node.value.attr == "history":
                calls.append(f"{path.name}: history.{node.attr}")
    assert calls == []

    window = make_window()  # and the Compare page's prompt sets take the core's way
    window.show_compare()
    page = window.compare_page
    saved = []
    original = page.compare.prompt_sets.save
    page.compare.prompt_sets.save = lambda *a, **k: saved.append(a) or original(*a, **k)

    def fill(dialog):
        dialog.name.setText("daily")
        dialog.prompts.setPlainText("One\n\nTwo")
        dialog.accept()

    in_dialog(qtbot, fill)
    page.new_set()
    assert saved and page.sets_combo.currentData() == "daily" and "(2 prompts)" in page.status.text()
    assert [s.name for s in page.compare.prompt_sets.all()] == ["daily"]


def test_the_picker_and_its_sizes_stay_on_the_toolbar_at_700_by_500(qtbot, make_window):
    window = make_window(size=(700, 500), model="gemma3-270m-base")  # a family of four sizes
    qtbot.wait(50)
    picker = window.model_picker
    assert picker.isVisible() and picker.combo.isVisible()  # not sent to the toolbar's overflow
    assert all(b.isVisible() for b in picker.size_buttons.values()) and len(picker.size_buttons) == 4
    assert picker.mapTo(window, QPoint(picker.width(), 0)).x() <= window.width()
    assert not picker.family_label.isVisible() and "Gemma 3" in next(iter(picker.size_buttons.values())).toolTip()
    window.resize(1400, 900)  # room again: the family's name and the whole name box come back
    qtbot.wait(50)
    assert picker.family_label.isVisible() and picker.family_label.text() == "Gemma 3 · base model"

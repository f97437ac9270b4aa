"""The main window with a scripted engine: fast tests of what a person does."""

import json

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QTextCursor
from PySide6.QtWidgets import QWidget, QAbstractButton, QLineEdit, QPlainTextEdit, QComboBox, QAbstractSpinBox

from tests.support.fake_engine import FakeEngine
from tests.support.window import open_window


@pytest.fixture
def make_window(qtbot, tmp_path):
    made = []

    def make(engine_factory=FakeEngine, model="llama-3.2-1b"):
        window = open_window(qtbot, tmp_path, engine_factory())
        window.show()
        with qtbot.waitSignal(window.bridge.modelLoaded, timeout=10_000):
            window.load_model(model)
        made.append(window)
        return window

    yield make
    for window in made:
        window.close()


def settle(qtbot, window):
    """The window's own slot for the finished reply runs after the signal the test waited for."""
    qtbot.waitUntil(lambda: not window.generating, timeout=10_000)
    qtbot.wait(20)


def send(qtbot, window, text, wait=True):
    window.input.edit.setPlainText(text)
    if wait:
        with qtbot.waitSignal(window.bridge.turnFinished, timeout=10_000):
            qtbot.keyClick(window.input.edit, Qt.Key_Return)
        settle(qtbot, window)
    else:
        qtbot.keyClick(window.input.edit, Qt.Key_Return)


def test_a_message_streams_a_reply_with_its_stats_line_and_is_listed(qtbot, make_window):
    window = make_window()
    send(qtbot, window, "Give me a list")
    widgets = list(window.chat.widgets.values())
    assert [w.role for w in widgets] == ["user", "assistant"]
    reply = widgets[1]
    assert "apples" in reply.text and "<li>" in reply.body.text() and "Copy" in reply.body.text()
    assert "tok/s" in reply.stats_label.text() and "llama-3.2-1b Q4_K_M" in reply.stats_label.text()
    assert "Prompt" in reply.stats_label.toolTip() and "KV cache" in reply.stats_label.toolTip()
    assert window.sidebar.list.count() == 1 and "Give me a list" in window.sidebar.list.item(0).text()
    assert "Context:" in window.input.context_label.text()


def test_shift_enter_adds_a_line_and_enter_sends(qtbot, make_window):
    window = make_window()
    window.input.edit.setPlainText("first")
    window.input.edit.moveCursor(QTextCursor.MoveOperation.End)
    qtbot.keyClick(window.input.edit, Qt.Key_Return, Qt.ShiftModifier)
    assert window.input.edit.toPlainText() == "first\n"
    with qtbot.waitSignal(window.bridge.turnFinished, timeout=10_000):
        qtbot.keyClick(window.input.edit, Qt.Key_Return)
    assert window.input.edit.toPlainText() == ""


def test_escape_stops_the_reply_and_keeps_the_partial_text(qtbot, make_window):
    window = make_window(lambda: FakeEngine(reply="word " * 400, token_delay=0.01))
    send(qtbot, window, "Talk a lot", wait=False)
    qtbot.waitUntil(lambda: any(w.role == "assistant" and w.text for w in window.chat.widgets.values()),
                    timeout=5000)
    with qtbot.waitSignal(window.bridge.turnFinished, timeout=5000) as blocker:
        qtbot.keyClick(window, Qt.Key_Escape)
    settle(qtbot, window)
    stats = blocker.args[0].stats
    assert stats["stop_reason"] == "stopped" and 0 < stats["completion_tokens"] < 400
    saved = window.history.get_message(blocker.args[0].reply_id)
    assert saved.status == "stopped" and saved.content == stats["reply"]
    assert "stopped" in window.chat.widgets[blocker.args[0].reply_id].stats_label.text()


def test_a_reply_lands_in_its_own_conversation_when_the_user_switches_away(qtbot, make_window):
    window = make_window(lambda: FakeEngine(reply="slow " * 60, token_delay=0.01))
    send(qtbot, window, "First conversation")
    first_id = window.current_id
    window.new_chat()
    send(qtbot, window, "Second conversation", wait=False)
    qtbot.waitUntil(lambda: window.current_id not in (None, first_id), timeout=5000)
    second_id = window.current_id
    with qtbot.waitSignal(window.bridge.turnFinished, timeout=10_000):
        window.open_conversation(first_id)  # look away while it streams
    settle(qtbot, window)
    assert window.current_id == first_id
    second = window.history.get_conversation(second_id)
    assert second.thread[-1].role == "assistant" and second.thread[-1].content.count("slow") == 60
    window.open_conversation(second_id)
    assert list(window.chat.widgets.values())[-1].text.count("slow") == 60


def test_edit_and_regenerate_make_branches_with_arrows(qtbot, make_window):
    window = make_window()
    send(qtbot, window, "Original")
    user_id, reply_id = list(window.chat.widgets)
    with qtbot.waitSignal(window.bridge.turnFinished, timeout=10_000):
        window.chat.widgets[reply_id].regenerateRequested.emit(reply_id)
    settle(qtbot, window)
    window.open_conversation(window.current_id)
    newest = list(window.chat.widgets.values())[-1]
    assert newest.branch_label.text() == "2/2"
    window.switch_branch(reply_id)
    assert list(window.chat.widgets.values())[-1].branch_label.text() == "1/2"
    with qtbot.waitSignal(window.bridge.turnFinished, timeout=10_000):
        window.chat.widgets[user_id].editRequested.emit(user_id, "Edited")
    settle(qtbot, window)
    window.open_conversation(window.current_id)
    user_widget = list(window.chat.widgets.values())[0]
    assert user_widget.text == "Edited" and user_widget.branch_label.text() == "2/2"


def test_search_jumps_to_the_matching_message(qtbot, make_window):
    window = make_window()
    send(qtbot, window, "Tell me about zebras")
    window.new_chat()
    send(qtbot, window, "Something else")
    window.sidebar.search.setText("zebras")
    lst = window.sidebar.list  # a search row's text is its accessible text: the label over it draws it
    qtbot.waitUntil(lambda: lst.count() >= 1 and "zebras" in (lst.item(0).data(Qt.AccessibleTextRole) or ""),
                    timeout=3000)
    window.sidebar._activated(window.sidebar.list.item(0))
    assert window.history.get_conversation(window.current_id).title == "Tell me about zebras"


def test_rename_export_and_delete_with_confirmation(qtbot, make_window, tmp_path, monkeypatch):
    window = make_window()
    send(qtbot, window, "Keep this")
    conv_id = window.current_id
    monkeypatch.setattr(window.sidebar, "ask_title", lambda title: ("Renamed", True))
    window.sidebar.rename(conv_id)
    assert window.history.get_conversation(conv_id).title == "Renamed"
    md = window.sidebar.export(conv_id, "md", str(tmp_path / "c.md"))
    assert "Renamed" in open(md, encoding="utf-8").read() and "tok/s" in open(md, encoding="utf-8").read()
    data = json.load(open(window.sidebar.export(conv_id, "json", str(tmp_path / "c.json")), encoding="utf-8"))
    assert data["conversations"][0]["title"] == "Renamed"
    monkeypatch.setattr(window.sidebar, "confirm_delete", lambda title: False)
    assert not window.sidebar.delete(conv_id)
    monkeypatch.setattr(window.sidebar, "confirm_delete", lambda title: title == "Renamed")
    assert window.sidebar.delete(conv_id)
    assert window.history.count_conversations() == 0 and window.current_id is None
    assert window.history.search("Keep") == []


def test_stats_line_can_show_always_on_hover_or_never(qtbot, make_window):
    window = make_window()
    send(qtbot, window, "Hi")
    reply = list(window.chat.widgets.values())[-1]
    assert reply.stats_label.isVisible()
    window.chat.set_stats_mode("never")
    assert not reply.stats_label.isVisible()
    window.chat.set_stats_mode("hover")
    assert not reply.stats_label.isVisible() and reply.stats_label.text()


def test_a_model_that_fails_to_load_shows_why_and_keeps_the_window_usable(qtbot, make_window, monkeypatch):
    window = make_window()
    shown = []
    monkeypatch.setattr("ui.main_window.QMessageBox.warning", lambda *a: shown.append(a[2]))
    with qtbot.waitSignal(window.bridge.modelFailed, timeout=5000):
        window.load_model("missing-model")
    assert shown and "missing-model" in shown[0]
    send(qtbot, window, "Still works?")
    assert list(window.chat.widgets.values())[-1].text


def test_every_control_has_an_accessible_name(qtbot, make_window):
    window = make_window()
    send(qtbot, window, "Hi")
    unnamed = []
    kinds = (QAbstractButton, QLineEdit, QPlainTextEdit, QComboBox, QAbstractSpinBox)
    for widget in window.findChildren(QWidget):
        if isinstance(widget, kinds) and widget.isVisible() and widget.focusPolicy() != Qt.NoFocus and not widget.accessibleName():
            unnamed.append(f"{type(widget).__name__}:{widget.text() if hasattr(widget, 'text') else ''}")
    assert unnamed == []


def test_closing_during_generation_saves_the_partial_reply_and_stops_the_thread(qtbot, make_window):
    window = make_window(lambda: FakeEngine(reply="long " * 500, token_delay=0.01))
    send(qtbot, window, "Go", wait=False)
    qtbot.waitUntil(lambda: any(w.role == "assistant" and w.text for w in window.chat.widgets.values()),
                    timeout=5000)
    conv_id = window.current_id
    window.close()
    assert not window.services.chat._thread.is_alive()
    last = window.history.get_conversation(conv_id).thread[-1]
    assert last.role == "assistant" and last.status == "stopped" and last.content.startswith("long")


def test_switching_theme_recolours_styled_widgets_too(qtbot, make_window):
    from PySide6.QtGui import QPalette

    window = make_window()
    send(qtbot, window, "Hi")
    window.set_theme("dark")
    assert window.sidebar.list.palette().color(QPalette.Base).lightness() < 128
    window.set_theme("light")
    assert window.sidebar.list.palette().color(QPalette.Base).lightness() > 128
    assert window.chat.widgets  # the conversation is still on screen


def test_a_long_conversation_opens_with_its_last_page_and_loads_earlier_ones(qtbot, make_window):
    from ui.chat_view import PAGE

    window = make_window()
    history = window.history
    conv = history.create_conversation(model="m")
    ids = []
    for i in range(2 * PAGE + 10):
        ids.append(history.add_message(conv.id, "user" if i % 2 == 0 else "assistant", f"message {i}").id)
    window.open_conversation(conv.id)
    assert len(window.chat.widgets) == PAGE and window.chat.more_button.isVisible()
    assert window.chat.more_button.text() == f"Show {PAGE + 10} earlier messages"
    window.chat.show_earlier()
    assert len(window.chat.widgets) == 2 * PAGE
    window.chat.show_earlier()
    assert len(window.chat.widgets) == 2 * PAGE + 10 and not window.chat.more_button.isVisible()
    order = [window.chat._layout.itemAt(i).widget() for i in range(window.chat._layout.count())]
    shown = [w.text for w in order if w in window.chat.widgets.values()]
    assert shown == [f"message {i}" for i in range(2 * PAGE + 10)]  # oldest first, nothing out of place
    window.open_conversation(conv.id, ids[3])  # a search hit far back is built and shown
    assert ids[3] in window.chat.widgets


def test_a_turn_does_not_read_its_conversation_back_after_the_reply(qtbot, make_window, monkeypatch):
    """The finished event carries the saved reply: the window shows it without asking the database."""
    window = make_window()
    send(qtbot, window, "First")
    reads = []
    for name in ("get_conversation", "get_message", "branch_path", "siblings"):
        original = getattr(window.history, name)
        monkeypatch.setattr(window.history, name, lambda *a, _n=name, _o=original, **k: (reads.append(_n), _o(*a, **k))[1])
    finished_at = []
    window.bridge.turnFinished.connect(lambda e: finished_at.append(len(reads)))
    send(qtbot, window, "Second")
    assert finished_at, "the turn did not finish"
    after = reads[finished_at[0]:]
    assert after == [], f"read back after the reply finished: {after}"
    reply = list(window.chat.widgets.values())[-1]
    assert reply.role == "assistant" and "tok/s" in reply.stats_label.text()

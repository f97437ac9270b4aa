"""The window with the keyboard alone: every view, the shortcuts list, and a message sent."""

import pytest
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QApplication, QPushButton

from tests.support.fake_engine import FakeEngine
from tests.support.window import open_window
from ui.model_manager import ModelManager
from ui.settings_dialog import SettingsDialog
from ui.workers import background_busy


@pytest.fixture
def window(qtbot, tmp_path):
    window = open_window(qtbot, tmp_path, FakeEngine())
    window.resize(1200, 800)
    window.show()
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow, timeout=5000)
    with qtbot.waitSignal(window.bridge.modelLoaded, timeout=10_000):
        window.load_model("llama-3.2-1b")
    yield window
    qtbot.waitUntil(lambda: not background_busy(), timeout=30_000)
    window.close()


def press(qtbot, key, modifier=Qt.NoModifier):
    """A key as the person presses it: to whatever has the focus."""
    target = QApplication.focusWidget() or QApplication.activeWindow()
    assert target is not None, "nothing has the focus"
    qtbot.keyClick(target, key, modifier)


def back_to(qtbot, window):
    """A closed dialog hands the focus back to the window: the window manager's part, which the
    offscreen platform leaves out."""
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow, timeout=5000)


def in_dialog(qtbot, then, seen: list):
    """Once a modal dialog is up, note its type and press `then` in it: Esc closes it; for Enter,
    Tab first moves to its OK button (Enter in a text box adds a line, as it should)."""
    def act():
        dialog = QApplication.activeModalWidget()
        if dialog is None:
            QTimer.singleShot(50, act)
            return
        seen.append(type(dialog).__name__)
        if then == Qt.Key_Return:
            for _ in range(60):
                focused = dialog.focusWidget()
                if isinstance(focused, QPushButton) and focused.text() == "OK":
                    break
                qtbot.keyClick(focused or dialog, Qt.Key_Tab)
        qtbot.keyClick(dialog.focusWidget() or dialog, then)  # the key goes to the dialog, which has the focus
    QTimer.singleShot(100, act)


def test_every_view_and_a_message_with_the_keyboard_alone(qtbot, window):
    ctrl = Qt.ControlModifier
    press(qtbot, Qt.Key_L, ctrl)  # the message box
    assert QApplication.focusWidget() is window.input.edit

    press(qtbot, Qt.Key_2, ctrl)
    assert window.pages.currentWidget() is window.stats_view and window.stats_action.isChecked()
    press(qtbot, Qt.Key_3, ctrl)
    assert window.pages.currentWidget() is window.compare_page and window.compare_action.isChecked()
    press(qtbot, Qt.Key_4, ctrl)
    assert window.pages.currentWidget() is window.server_page and window.server_action.isChecked()
    assert not window.chat_action.isChecked()

    seen = []
    in_dialog(qtbot, Qt.Key_Return, seen)
    press(qtbot, Qt.Key_6, ctrl)  # Settings, closed with Enter (OK)
    assert window.pages.currentWidget() is window.server_page  # OK keeps the view you were on
    back_to(qtbot, window)
    in_dialog(qtbot, Qt.Key_Escape, seen)
    press(qtbot, Qt.Key_5, ctrl)  # Models: the dialog runs until Esc closes it
    assert seen == [SettingsDialog.__name__, ModelManager.__name__]
    qtbot.waitUntil(lambda: not background_busy(), timeout=30_000)
    back_to(qtbot, window)
    in_dialog(qtbot, Qt.Key_Escape, seen)
    press(qtbot, Qt.Key_F1)
    assert seen[-1] == "QDialog"  # the shortcuts list
    back_to(qtbot, window)

    press(qtbot, Qt.Key_1, ctrl)
    assert window.pages.currentWidget() is window.pages.widget(0) and window.chat_action.isChecked()
    press(qtbot, Qt.Key_L, ctrl)
    qtbot.keyClicks(QApplication.focusWidget(), "Hello by keyboard")
    with qtbot.waitSignal(window.bridge.turnFinished, timeout=10_000):
        press(qtbot, Qt.Key_Return)
    qtbot.waitUntil(lambda: not window.generating, timeout=10_000)
    texts = [w.text for w in window.chat.widgets.values()]
    assert texts[0] == "Hello by keyboard" and "apples" in texts[1]
    assert window.sidebar.list.count() == 1


def test_tab_leaves_the_message_box_and_reaches_every_view_and_the_picker(qtbot, window):
    press(qtbot, Qt.Key_L, Qt.ControlModifier)
    window.input.edit.setPlainText("draft")
    press(qtbot, Qt.Key_Tab)
    assert QApplication.focusWidget() is not window.input.edit
    assert window.input.edit.toPlainText() == "draft"  # no tab character typed
    press(qtbot, Qt.Key_Tab, Qt.ShiftModifier)
    assert QApplication.focusWidget() is window.input.edit

    wanted = {window.button_for(a) for a in (window.chat_action, window.stats_action, window.compare_action,
                                                   window.server_action, window.models_action,
                                                   window.settings_action, window.sidebar_action)}
    wanted.add(window.model_picker.combo)
    reached = set()
    for _ in range(80):  # round the whole Tab chain
        press(qtbot, Qt.Key_Tab)
        widget = QApplication.focusWidget()
        reached.add(widget)
        if widget is window.input.edit and wanted <= reached:
            break
    missing = [w.accessibleName() for w in wanted - reached]
    assert missing == []


def test_focus_is_drawn_in_both_themes(qtbot, window):
    """The style sheet gives focused controls a ring in the accent colour, light and dark."""
    from ui.theme import ACCENT_DARK, ACCENT_LIGHT

    for theme, accent in (("light", ACCENT_LIGHT), ("dark", ACCENT_DARK)):
        window.set_theme(theme)
        sheet = QApplication.instance().styleSheet()
        for selector in ("QToolButton:focus", "QPushButton:focus", "QPlainTextEdit:focus", "QListWidget:focus"):
            assert selector in sheet
        assert f"border: 2px solid {accent}" in sheet
    window.set_theme("light")


def test_the_shortcuts_list_names_every_view(qtbot, window):
    dialog = window.make_shortcuts_dialog()
    qtbot.addWidget(dialog)
    table = dialog.findChild(type(dialog.layout().itemAt(0).widget()))
    rows = {table.item(r, 1).text(): table.item(r, 0).text() for r in range(table.rowCount())}
    for view, keys in (("Chat", "Ctrl+1"), ("Statistics", "Ctrl+2"), ("Compare", "Ctrl+3"),
                       ("Local server", "Ctrl+4"), ("Models", "Ctrl+5")):
        assert rows[view] == keys
    assert window.chat_action.shortcut().toString() == "Ctrl+1"
    assert "Ctrl+6" in window.settings_action.toolTip()

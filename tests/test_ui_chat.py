"""Issue 12 in the window: narrow widths, scrolling, editing, Continue, copy, export, reopening,
other processes' chats, history notices, API chats, grouped search and the chat header."""

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication

from assistant.history import HistoryStore
from assistant.history.notices import NoticeBoard
from tests.support.fake_engine import FakeEngine
from tests.support.window import open_window
from ui.sidebar import _file_name
from ui.workers import background_busy

LONG = " ".join(f"word{i}" for i in range(400))


@pytest.fixture
def make_window(qtbot, tmp_path):
    made = []

    def make(engine=None, size=(1200, 800)):
        window = open_window(qtbot, tmp_path, engine or FakeEngine())
        window.resize(*size)
        window.show()
        with qtbot.waitSignal(window.bridge.modelLoaded, timeout=10_000):
            window.load_model("llama-3.2-1b")
        made.append(window)
        return window

    yield make
    qtbot.waitUntil(lambda: not background_busy(), timeout=30_000)
    for window in made:
        window.close()


def send(qtbot, window, text):
    window.input.edit.setPlainText(text)
    with qtbot.waitSignal(window.bridge.turnFinished, timeout=10_000):
        qtbot.keyClick(window.input.edit, Qt.Key_Return)
    qtbot.waitUntil(lambda: not window.generating, timeout=10_000)
    qtbot.wait(30)


def test_a_narrow_window_reflows_with_no_sideways_scrolling_and_a_steady_toolbar(qtbot, make_window):
    window = make_window(FakeEngine(reply="```python\n" + "x = 1  # " + "long " * 60 + "\n```\n\n" + LONG))
    send(qtbot, window, "A " + "very long question " * 30)
    wide_height = window.toolbar.height()
    window.resize(640, 520)
    qtbot.wait(100)
    assert window.width() <= 660 and window.sidebar.isHidden()
    assert window.toolbar.height() == wide_height
    for action in (window.chat_action, window.stats_action, window.compare_action, window.server_action,
                   window.models_action, window.settings_action):
        button = window.button_for(action)
        assert button.isVisible() and button.geometry().bottom() <= window.rail.height()
    chat = window.chat
    assert chat.horizontalScrollBarPolicy() == Qt.ScrollBarAlwaysOff
    assert chat.widget().width() <= chat.viewport().width()
    for widget in chat.widgets.values():
        assert widget.geometry().right() <= chat.viewport().width()
        for button in widget.findChildren(type(widget.copy_button)):
            if button.isVisible():
                assert button.mapTo(chat.viewport(), button.rect().bottomRight()).x() <= chat.viewport().width()
    window.toggle_sidebar()  # the sidebar can still be brought back
    assert window.sidebar.isVisible()


def test_after_a_reply_the_view_shows_the_start_of_the_newest_message_with_no_blank_space(qtbot, make_window):
    window = make_window(FakeEngine(reply=LONG), size=(900, 560))
    send(qtbot, window, "First")
    send(qtbot, window, "Second")
    chat = window.chat
    bar = chat.verticalScrollBar()
    newest = chat.newest()
    assert newest.role == "assistant"
    assert abs(bar.value() - (newest.y() - chat._layout.spacing())) <= 2  # its first line at the top
    margins = chat._layout.contentsMargins()
    assert chat.widget().height() <= max(chat.viewport().height(), newest.geometry().bottom() + margins.bottom() + 2)
    user_id = list(chat.widgets)[-2]
    with qtbot.waitSignal(window.bridge.turnFinished, timeout=10_000):
        window.chat.widgets[user_id].editRequested.emit(user_id, "Second, edited")
    qtbot.waitUntil(lambda: not window.generating, timeout=10_000)
    qtbot.wait(50)
    newest = chat.newest()
    assert abs(bar.value() - (newest.y() - chat._layout.spacing())) <= 2


def test_the_inline_editor_sends_on_enter_and_adds_a_line_on_shift_enter(qtbot, make_window):
    window = make_window()
    send(qtbot, window, "Original")
    user = next(w for w in window.chat.widgets.values() if w.role == "user")
    user._start_edit()
    editor = user.editor
    assert editor.hasFocus() or editor.isVisible()
    editor.setPlainText("Changed")
    editor.moveCursor(editor.textCursor().MoveOperation.End)
    qtbot.keyClick(editor, Qt.Key_Return, Qt.ShiftModifier)
    assert editor.toPlainText() == "Changed\n"
    qtbot.keyClicks(editor, "again")
    with qtbot.waitSignal(window.bridge.turnFinished, timeout=10_000):
        qtbot.keyClick(editor, Qt.Key_Return)
    qtbot.waitUntil(lambda: not window.generating, timeout=10_000)
    first = list(window.chat.widgets.values())[0]
    assert first.text == "Changed\nagain" and first.branch_label.text() == "2/2"


def test_each_user_version_shows_its_own_reply(qtbot, make_window):
    window = make_window()
    send(qtbot, window, "Version one")
    user_v1, reply_v1 = list(window.chat.widgets)
    with qtbot.waitSignal(window.bridge.turnFinished, timeout=10_000):
        window.chat.widgets[user_v1].editRequested.emit(user_v1, "Version two")
    qtbot.waitUntil(lambda: not window.generating, timeout=10_000)
    user_v2, reply_v2 = list(window.chat.widgets)
    assert user_v2 != user_v1 and reply_v2 != reply_v1
    window.switch_branch(user_v1)
    assert list(window.chat.widgets) == [user_v1, reply_v1]
    window.switch_branch(user_v2)
    assert list(window.chat.widgets) == [user_v2, reply_v2]


def test_a_stopped_reply_can_be_continued(qtbot, make_window):
    window = make_window(FakeEngine(reply="more " * 300, token_delay=0.01))
    window.input.edit.setPlainText("Go on")
    qtbot.keyClick(window.input.edit, Qt.Key_Return)
    qtbot.waitUntil(lambda: any(w.role == "assistant" and len(w.text) > 20 for w in window.chat.widgets.values()),
                    timeout=5000)
    with qtbot.waitSignal(window.bridge.turnFinished, timeout=5000) as stopped:
        qtbot.keyClick(window, Qt.Key_Escape)
    qtbot.waitUntil(lambda: not window.generating, timeout=10_000)
    reply = window.chat.widgets[stopped.args[0].reply_id]
    before = reply.text
    assert reply.continue_button.isVisible() and reply.can_continue
    with qtbot.waitSignal(window.bridge.turnFinished, timeout=30_000) as continued:
        reply.continue_button.click()
    qtbot.waitUntil(lambda: not window.generating, timeout=10_000)
    saved = window.history.get_message(continued.args[0].reply_id)
    assert continued.args[0].reply_id != stopped.args[0].reply_id
    assert saved.content.startswith(before) and len(saved.content) > len(before)
    newest = window.chat.newest()
    assert newest.message_id == saved.id and newest.branch_label.text() == "2/2"
    assert not newest.continue_button.isVisible()  # finished: nothing left to continue


def test_copy_confirms_on_the_button_and_in_the_status_bar(qtbot, make_window):
    window = make_window()
    send(qtbot, window, "Copy me")
    reply = window.chat.newest()
    reply.copy_button.click()
    assert QGuiApplication.clipboard().text() == reply.text
    assert reply.copy_button.toolTip() == "Copied" and "copied" in window.statusBar().currentMessage()
    qtbot.waitUntil(lambda: reply.copy_button.toolTip() == "Copy message", timeout=3000)


def test_export_defaults_to_documents_named_after_the_title_and_confirms(qtbot, make_window, tmp_path, monkeypatch):
    window = make_window()
    send(qtbot, window, "Plans for the weekend")
    conv_id = window.current_id
    default = window.sidebar.default_export_path(conv_id, "md")
    assert default.parent.name in ("Documents", default.parent.name) and default.name == "Plans for the weekend.md"
    target = tmp_path / "out.md"
    monkeypatch.setattr("ui.sidebar.QFileDialog.getSaveFileName",
                        lambda parent, caption, path, filters: (str(target), filters))
    assert window.sidebar.export(conv_id, "md") == str(target) and target.read_text().count("weekend")
    assert window.statusBar().currentMessage() == f"Exported to {target}"
    monkeypatch.setattr("ui.sidebar.QMessageBox.warning", lambda *a: None)
    monkeypatch.setattr("ui.sidebar.QFileDialog.getSaveFileName",
                        lambda *a: (str(tmp_path / "missing-dir" / "x.md"), ""))
    assert window.sidebar.export(conv_id, "md") is None  # a folder that is not there: one sentence, no crash
    assert "Cannot write" in window.statusBar().currentMessage()  # common.user_files says why


@pytest.mark.parametrize("title, expected", [
    ("../../etc/passwd", "etcpasswd"), ("a/b\\c:d*e?", "abcde"), ("", "conversation-7"), ("...", "conversation-7"),
    ("  spaced   out  ", "spaced out"), ("Ünïcode 日本", "Ünïcode 日本"), ("x" * 300, "x" * 80),
    ("nul\x00byte\x1b[2J", "nulbyte2J"),
])
def test_export_file_names_from_hostile_titles_stay_plain_names(title, expected):
    assert _file_name(title, 7) == expected


def test_the_app_reopens_on_the_last_conversation(qtbot, tmp_path):
    window = open_window(qtbot, tmp_path, FakeEngine())
    with qtbot.waitSignal(window.bridge.modelLoaded, timeout=10_000):
        window.load_model("m")
    send(qtbot, window, "Remember me")
    conv_id = window.current_id
    window.close()
    again = open_window(qtbot, tmp_path, FakeEngine())
    assert again.current_id == conv_id and [w.text for w in again.chat.widgets.values()][0] == "Remember me"
    again.sidebar.delete(conv_id, confirm=False)
    again.close()
    third = open_window(qtbot, tmp_path, FakeEngine())
    assert third.current_id is None and not third.chat.widgets  # deleted: a new chat
    third.close()


def test_the_sidebar_picks_up_conversations_saved_by_another_process(qtbot, make_window, tmp_path):
    window = make_window()
    send(qtbot, window, "Mine")
    other = HistoryStore.open(tmp_path / "history.db")  # another process: the CLI, the API server
    conv = other.create_conversation(model="m")
    other.add_message(conv.id, "user", "From the command line")
    other.rename(conv.id, "CLI chat")
    other.close()
    qtbot.waitUntil(lambda: window.sidebar.list.count() == 2, timeout=10_000)  # the watch timer, no restart


def test_history_notices_show_with_their_path_until_dismissed(qtbot, tmp_path):
    db = tmp_path / "history.db"
    HistoryStore.open(db).close()
    NoticeBoard(db).add(f"The chat history database {db} was damaged. It was moved to {tmp_path}/moved.db.",
                        tmp_path / "moved.db")
    window = open_window(qtbot, tmp_path, FakeEngine())
    window.show()
    rows = window.notices.rows
    assert len(rows) == 1 and "moved.db" in rows[0].label.text() and window.notices.isVisible()
    rows[0].dismiss.click()
    assert window.notices.rows == [] and not window.notices.isVisible()
    assert window.history.notices() == []
    window.close()
    again = open_window(qtbot, tmp_path, FakeEngine())
    assert again.notices.rows == []  # dismissed for good
    again.close()


def test_api_conversations_are_marked_in_the_sidebar(qtbot, make_window):
    window = make_window()
    send(qtbot, window, "From the window")
    send_id = window.current_id
    window.new_chat()
    send(qtbot, window, "Pretend API")
    api_id = window.current_id
    window.services.chat.set_conversation_settings(api_id, {"source": "api"})
    window.sidebar.refresh()
    items = {window.sidebar.list.item(i).data(Qt.UserRole)[0]: window.sidebar.list.item(i)
             for i in range(window.sidebar.list.count())}
    assert not items[api_id].icon().isNull() and "API" in items[api_id].toolTip()
    assert items[send_id].icon().isNull() and "API" not in items[send_id].toolTip()


def test_search_groups_hits_by_conversation_and_highlights_the_match(qtbot, make_window):
    window = make_window()
    send(qtbot, window, "zebras are striped")
    send(qtbot, window, "more about zebras please")
    window.new_chat()
    send(qtbot, window, "<b>zebras</b> & <script>")  # markup from the user shows as written
    window.sidebar.search.setText("zebras")
    lst = window.sidebar.list
    qtbot.waitUntil(lambda: lst.count() == 2 and lst.itemWidget(lst.item(0)) is not None, timeout=3000)
    texts = []
    for i in range(2):
        item = window.sidebar.list.item(i)
        label = window.sidebar.list.itemWidget(item)
        texts.append(label.text())
        assert "background-color:" in label.text() and item.data(Qt.AccessibleTextRole).splitlines()[0]
        assert item.text() == ""  # the label draws the row; the item draws nothing under it
    assert any("&lt;b&gt;" in t and "&lt;script&gt;" in t for t in texts)
    first = window.sidebar.list.item(0)
    window.sidebar._activated(first)
    assert window.current_id == first.data(Qt.UserRole)[0]


def test_the_header_shows_the_system_prompt_and_a_new_chat_gets_the_defaults(qtbot, make_window):
    window = make_window()
    window.defaults["system_prompt"] = "Answer like a pirate."
    window.new_chat()
    assert "Answer like a pirate." in window.header.prompt_text() and window.header.title.text() == "New chat"
    send(qtbot, window, "Hello")
    assert "Answer like a pirate." in window.header.prompt_text()
    assert window.header.title.text() == window.history.get_conversation(window.current_id).display_title
    window.services.chat.set_conversation_settings(window.current_id, {"temperature": 0.1})
    window._show_header()
    assert window.header.settings_button.text() == "This chat •" and "temperature" in window.header.settings_button.toolTip()


def test_a_theme_change_keeps_the_page_shown(qtbot, make_window):
    window = make_window()
    send(qtbot, window, "Hi")
    window.show_page(1)
    window.set_theme("dark")
    assert window.pages.currentWidget() is window.stats_view and window.stats_action.isChecked()
    window.set_theme("light")


def test_the_inline_editor_opens_fully_visible_header_included(qtbot, make_window):
    window = make_window(FakeEngine(reply=LONG), size=(900, 520))
    send(qtbot, window, "First question")
    send(qtbot, window, "Second question")
    chat = window.chat
    bar = chat.verticalScrollBar()
    bar.setValue(bar.maximum())  # read to the end: the last question is far above
    qtbot.wait(30)
    user = [w for w in chat.widgets.values() if w.role == "user"][-1]
    assert user.y() + user.height() < bar.value()  # off screen before
    user._start_edit()
    qtbot.waitUntil(lambda: bar.value() <= user.y(), timeout=2000)  # its header ("You", the buttons) shows
    editor_bottom = user.editor.mapTo(chat.widget(), user.editor.rect().bottomLeft()).y()
    assert editor_bottom <= bar.value() + chat.viewport().height()


def test_the_rename_dialog_has_room_for_a_long_title(qtbot, make_window):
    window = make_window()
    send(qtbot, window, "Name me")
    dialog = window.sidebar.make_rename_dialog("A rather long conversation title that should fit")
    qtbot.addWidget(dialog)
    assert dialog.width() >= 440 and dialog.windowTitle() == "Rename conversation"
    assert dialog.textValue() == "A rather long conversation title that should fit"


def test_a_reopened_chat_in_dark_mode_draws_code_in_dark_colours(qtbot, tmp_path):
    from PySide6.QtWidgets import QApplication

    from ui.theme import apply_theme

    apply_theme(QApplication.instance(), "dark")
    try:
        window = open_window(qtbot, tmp_path, FakeEngine())
        assert window.chat.renderer.dark
        window.close()
    finally:
        apply_theme(QApplication.instance(), "light")


def test_emoji_get_a_colour_font_where_the_platform_has_none(qtbot):
    from PySide6.QtGui import QFont, QFontMetrics
    from PySide6.QtWidgets import QApplication

    from ui.theme import add_emoji_fallback

    app = QApplication.instance()
    family = add_emoji_fallback(app, families={"DejaVu Sans"})  # a desktop with no emoji font
    assert family == "OpenMoji Color"
    assert QFontMetrics(QFont(family)).inFontUcs4(0x1F600)  # 😀
    assert add_emoji_fallback(app, families={"Noto Color Emoji", "DejaVu Sans"}) == "Noto Color Emoji"
    add_emoji_fallback(app)  # back to what this machine has


def test_esc_closes_the_inline_editor_and_stops_nothing(qtbot, make_window):
    window = make_window()
    send(qtbot, window, "Keep me")
    user = next(w for w in window.chat.widgets.values() if w.role == "user")
    user._start_edit()
    window.activateWindow()
    user.editor.setFocus()
    qtbot.keyClick(user.editor, Qt.Key_Escape)
    assert user.editor is None and user.body.isVisible() and user.text == "Keep me"


def test_f2_renames_and_delete_deletes_from_the_list(qtbot, make_window, monkeypatch):
    window = make_window()
    send(qtbot, window, "List keys")
    conv_id = window.current_id
    lst = window.sidebar.list
    lst.setCurrentRow(0)
    monkeypatch.setattr(window.sidebar, "ask_title", lambda title: ("Renamed by F2", True))
    qtbot.keyClick(lst, Qt.Key_F2)
    assert window.history.get_conversation(conv_id).title == "Renamed by F2"
    lst.setCurrentRow(0)
    monkeypatch.setattr(window.sidebar, "confirm_delete", lambda title: title == "Renamed by F2")
    qtbot.keyClick(lst, Qt.Key_Delete)
    assert window.history.count_conversations() == 0 and window.current_id is None


def test_query_words_are_marked_in_titles_whatever_the_query_holds():
    from ui.sidebar import MARK_CLOSE, MARK_OPEN, _mark_words, _marked_html
    from PySide6.QtGui import QPalette

    assert _mark_words("Zebras and ZEBRA", "zebra") == f"{MARK_OPEN}Zebra{MARK_CLOSE}s and {MARK_OPEN}ZEBRA{MARK_CLOSE}"
    assert _mark_words("a (b|c) [d]", "(b|c) [d") == f"a {MARK_OPEN}(b|c){MARK_CLOSE} {MARK_OPEN}[d{MARK_CLOSE}]"
    assert _mark_words("title", "   ") == "title"
    html = _marked_html(_mark_words("<script>x</script>", "script"), QPalette())
    assert "<script>" not in html and "&lt;" in html and html.count("<span") == 2

"""A reasoning model's thinking in the window: folded above the answer with its counts while it streams and
when done, expandable and copyable on its own, back when the chat is reopened, a reply that stopped while
thinking says so, the thinking settings (defaults and this chat), and search that finds thinking when asked."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication

from tests.support.fake_engine import FakeEngine
from tests.support.window import open_window
from ui.settings_dialog import ConversationSettingsDialog, SettingsDialog
from ui.workers import background_busy

THOUGHT = "The user asks about zebras. Stripes may confuse flies, so I will say that."
ANSWER = "Zebras have stripes to keep biting flies away."


@pytest.fixture
def make_window(qtbot, tmp_path):
    made = []

    def make(engine=None):
        window = open_window(qtbot, tmp_path, engine or FakeEngine(reply=ANSWER, thinking=THOUGHT))
        window.resize(1100, 800)
        window.show()
        with qtbot.waitSignal(window.bridge.modelLoaded, timeout=10_000):
            window.load_model("qwen3.5-4b")
        made.append(window)
        return window

    yield make
    qtbot.waitUntil(lambda: not background_busy(), timeout=30_000)
    for window in made:
        window.close()


def send(qtbot, window, text):
    window.input.edit.setPlainText(text)
    with qtbot.waitSignal(window.bridge.turnFinished, timeout=10_000) as done:
        qtbot.keyClick(window.input.edit, Qt.Key_Return)
    qtbot.waitUntil(lambda: not window.generating, timeout=10_000)
    return done.args[0]


def test_the_thinking_streams_folded_with_its_counts_then_says_how_long(qtbot, make_window):
    window = make_window(FakeEngine(reply=ANSWER, thinking=THOUGHT, token_delay=0.03))
    window.input.edit.setPlainText("Why do zebras have stripes?")
    qtbot.keyClick(window.input.edit, Qt.Key_Return)
    qtbot.waitUntil(lambda: any(w.thinking_block is not None and w.thinking_block.tokens >= 3
                                for w in window.chat.widgets.values()), timeout=5000)
    reply = window.chat.newest()
    block = reply.thinking_block
    assert block.header().startswith("Thinking… ") and " tokens · " in block.header() and block.header().endswith(" s")
    assert not block.expanded and not block.body.isVisible()  # folded while it streams
    assert "zebras" not in reply.text  # the answer has not started; the thinking is not in it
    with qtbot.waitSignal(window.bridge.turnFinished, timeout=10_000):
        pass
    qtbot.waitUntil(lambda: not window.generating, timeout=10_000)
    n = len(THOUGHT.split(" "))
    assert block.header().startswith("Thought for ") and block.header().endswith(f" · {n} tokens")
    assert reply.text.strip() == ANSWER and THOUGHT not in reply.body.text()
    # The footer counts thinking and answer apart.
    assert f"({n} thinking, {len(ANSWER.split(' '))} answer)" in reply.stats_label.text()


def test_the_block_unfolds_and_copies_the_thinking_alone(qtbot, make_window):
    window = make_window()
    send(qtbot, window, "Why do zebras have stripes?")
    reply = window.chat.newest()
    block = reply.thinking_block
    qtbot.mouseClick(block.toggle, Qt.LeftButton)
    assert block.expanded and block.body.isVisible() and block.body.text() == THOUGHT
    assert block.body.textFormat() == Qt.TextFormat.PlainText
    block.copy_button.click()
    assert QGuiApplication.clipboard().text() == THOUGHT
    reply.copy_button.click()  # the message's own copy: the answer only
    assert QGuiApplication.clipboard().text().strip() == ANSWER
    qtbot.mouseClick(block.toggle, Qt.LeftButton)
    assert not block.expanded and not block.body.isVisible()


def test_reopening_the_chat_shows_the_saved_thinking(qtbot, make_window, tmp_path):
    window = make_window()
    done = send(qtbot, window, "Why do zebras have stripes?")
    conv_id = window.current_id
    window.new_chat()
    window.open_conversation(conv_id)
    block = window.chat.widgets[done.reply_id].thinking_block
    assert block is not None and block.text == THOUGHT and block.header().startswith("Thought for ")
    window.close()
    again = open_window(qtbot, tmp_path, FakeEngine())  # a new start of the app, the same history
    reopened = again.chat.widgets[done.reply_id]
    assert reopened.thinking_block.text == THOUGHT and reopened.text.strip() == ANSWER
    again.close()


def test_a_reply_that_stopped_while_thinking_says_why(qtbot, make_window):
    window = make_window()
    window.defaults["max_tokens"] = 4
    send(qtbot, window, "Why do zebras have stripes?")
    reply = window.chat.newest()
    assert reply.text == "" and "stopped while thinking: raise the length limit or the budget" in reply.body.text()
    assert reply.thinking_block.header().endswith("(unfinished)")


def test_thinking_settings_in_the_defaults_and_in_this_chat(qtbot, make_window):
    window = make_window()
    dialog = SettingsDialog(dict(window.defaults), gpu=False)
    qtbot.addWidget(dialog)
    dialog.thinking.mode.setCurrentIndex(dialog.thinking.mode.findData("on"))
    dialog.thinking.budget.setValue(300)
    defaults, _ = dialog.result_settings()
    assert defaults["thinking"] == "on" and defaults["thinking_budget"] == 300 and defaults["thinking_effort"] is None

    chat = ConversationSettingsDialog(defaults, {"temperature": 0.3}, title="t", system_prompt=None)
    qtbot.addWidget(chat)
    assert chat.thinking.values()["thinking_budget"] == 300  # the defaults show through
    chat.thinking.mode.setCurrentIndex(chat.thinking.mode.findData("off"))
    chat.thinking.format.setCurrentIndex(chat.thinking.format.findData("none"))
    own = chat.result_settings()
    assert own == {"temperature": 0.3, "thinking": "off", "thinking_format": "none"}  # only what was changed
    again = ConversationSettingsDialog(defaults, own, title="t", system_prompt=None)
    qtbot.addWidget(again)
    assert "thinking" in again.status.text()
    again.use_defaults()
    assert again.result_settings() == {}

    # A chat's own "off" reaches the engine: the fake then does not think.
    window.defaults.update(defaults)
    send(qtbot, window, "First")
    window.services.chat.set_conversation_settings(window.current_id, {"thinking": "off"})
    assert window.current_settings().thinking == "off" and window.current_settings().thinking_budget == 300
    send(qtbot, window, "Second")
    assert window.chat.newest().thinking_block is None


def test_search_finds_thinking_when_asked(qtbot, make_window):
    window = make_window()
    send(qtbot, window, "Tell me about stripes")
    lst = window.sidebar.list
    window.sidebar.search.setText("flies")
    qtbot.waitUntil(lambda: lst.count() == 1, timeout=3000)  # the answer says "flies" too
    window.sidebar.search.setText("confuse")  # only the thinking says it
    qtbot.waitUntil(lambda: lst.count() == 1 and lst.item(0).text() == "No matches", timeout=3000)
    window.sidebar.search_thinking.setChecked(True)
    qtbot.waitUntil(lambda: lst.count() == 1 and lst.itemWidget(lst.item(0)) is not None, timeout=3000)
    assert "(thinking)" in lst.item(0).data(Qt.AccessibleTextRole)  # what the row says a match in the thinking is
    assert "(thinking)" in lst.itemWidget(lst.item(0)).text()


def test_the_statistics_view_says_what_thinking_costs_each_model(qtbot, make_window):
    window = make_window()
    send(qtbot, window, "Why do zebras have stripes?")
    window.show_page(1)
    view = window.stats_view
    qtbot.waitUntil(lambda: view.thinking.isVisible(), timeout=5000)
    text = view.thinking.text()
    assert text.startswith("Thinking: qwen3.5-4b ") and "% of its tokens" in text and "1 reply that thought" in text


@pytest.mark.llama_cpp
def test_the_real_stack_folds_a_real_runners_thinking(qtbot, tmp_path):
    """The real window, engine and runner: a random model under Qwen3.5's template (its prompt opens the
    thinking) thinks until the default budget closes it, then answers."""
    from assistant.engine import LocalEngine
    from tests.support.thinking_models import write_thinking_model

    path = write_thinking_model(tmp_path / "qwen.gguf", "think_tags")
    window = open_window(qtbot, tmp_path, LocalEngine())
    window.defaults.update(max_tokens=16, temperature=0, thinking_budget=5, n_threads=1, stop_on_repetition=False)
    window.show()
    with qtbot.waitSignal(window.bridge.modelLoaded, timeout=60_000):
        window.load_model(str(path))
    done = send(qtbot, window, "Why?")
    stats = done.stats
    assert stats["thinking_closed_by_budget"] and stats["thinking"] and stats["reply"]
    reply = window.chat.widgets[done.reply_id]
    assert reply.thinking_block.header() == (f"Thought for {stats['thinking_ms'] / 1000:.1f} s · "
                                             f"{stats['thinking_tokens']} tokens")
    assert reply.text == stats["reply"] and reply.thinking_block.text == stats["thinking"]
    assert window.history.get_message(done.reply_id).thinking == stats["thinking"]
    window.close()

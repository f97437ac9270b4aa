"""The real window with the real engine on the starter model, as a person uses it."""

import pytest
from PySide6.QtCore import Qt

from assistant.engine import LocalEngine as Engine
from tests.support.window import open_window

pytestmark = pytest.mark.llama_cpp


def test_type_stream_see_stats_switch_model_and_reopen(qtbot, tmp_path, gemma_model_path, tiny_model_path):
    window = open_window(qtbot, tmp_path, Engine())
    window.defaults["max_tokens"] = 24
    window.defaults["seed"] = 3
    window.show()
    with qtbot.waitSignal(window.bridge.modelLoaded, timeout=60_000) as loaded:
        window.load_model(str(gemma_model_path))
    assert loaded.args[0].summary.quant == "Q4_K_M"
    assert "Q4_K_M" in window.status_model.text()

    # Type a message and press Enter; text streams in batches before the reply ends.
    batches = []
    window.bridge.turnText.connect(lambda event: batches.append(event.text))
    qtbot.keyClicks(window.input.edit, "Why is the sky blue?")
    with qtbot.waitSignal(window.bridge.turnFinished, timeout=60_000) as finished:
        qtbot.keyClick(window.input.edit, Qt.Key_Return)
    qtbot.waitUntil(lambda: not window.generating, timeout=10_000)
    stats = finished.args[0].stats
    assert batches and stats["completion_tokens"] == 24 and stats["stop_reason"] == "length"
    reply = list(window.chat.widgets.values())[-1]
    assert reply.role == "assistant" and reply.text == stats["reply"]
    line = reply.stats_label.text()
    assert "tok/s" in line and "24 tokens" in line and "gemma-3-270m Q4_K_M" in line and "RAM" in line
    conv_id = window.current_id

    # Switch to another model; the next reply comes from it, in the same conversation.
    with qtbot.waitSignal(window.bridge.modelLoaded, timeout=60_000):
        window.load_model(str(tiny_model_path))
    assert window.model["name"] == "tiny"
    window.defaults["max_tokens"] = 4
    window.input.edit.setPlainText("And now?")
    with qtbot.waitSignal(window.bridge.turnFinished, timeout=60_000) as second:
        qtbot.keyClick(window.input.edit, Qt.Key_Return)
    qtbot.waitUntil(lambda: not window.generating, timeout=10_000)
    assert second.args[0].conversation_id == conv_id and second.args[0].stats["model"]["name"] == "tiny"

    # Reopen the conversation: both replies are there, each with its own model's stats line.
    window.new_chat()
    assert not window.chat.widgets
    window.open_conversation(conv_id)
    replies = [w for w in window.chat.widgets.values() if w.role == "assistant"]
    assert len(replies) == 2
    assert "gemma-3-270m" in replies[0].stats_label.text() and "tiny" in replies[1].stats_label.text()
    window.close()
    assert not window.services.chat._thread.is_alive()

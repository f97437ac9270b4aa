"""The real window with the real engine: a hostile model costs one sentence, never the window (issue 8)."""

import os
import signal

import pytest
from PySide6.QtCore import Qt

from assistant.engine import LocalEngine
from tests.support.tiny_gguf import write_hostile
from tests.support.window import open_window

pytestmark = pytest.mark.llama_cpp

# One of each kind of harm: an abort in llama.cpp, a template that loops, one that builds gigabytes,
# one that renders nothing, an impossible header value.
KINDS = ["duplicate_vocab", "template_nested_loop", "template_huge_at_render", "template_lipsum_globals",
         "nan_norm_eps"]


@pytest.fixture
def window(qtbot, tmp_path, monkeypatch):
    w = open_window(qtbot, tmp_path, LocalEngine())
    w.defaults["max_tokens"] = 6
    w.shown_errors = []
    monkeypatch.setattr("ui.main_window.QMessageBox.warning", lambda *a: w.shown_errors.append(a[2]))
    w.show()
    yield w
    w.close()


def _send(qtbot, window, text):
    window.input.edit.setPlainText(text)
    with qtbot.waitSignal(window.bridge.turnFinished, timeout=60_000) as finished:
        qtbot.keyClick(window.input.edit, Qt.Key_Return)
    qtbot.waitUntil(lambda: not window.generating, timeout=10_000)
    return finished.args[0].stats


def test_hostile_models_show_an_error_and_a_good_model_loads_and_answers(qtbot, window, tmp_path, tiny_model_path):
    for kind in KINDS:
        path = write_hostile(tmp_path / f"{kind}.gguf", kind)
        with qtbot.waitSignal(window.bridge.modelFailed, timeout=60_000) as failed:
            window.load_model(str(path))
        sentence = failed.args[0].sentence
        assert sentence.endswith(".") and "did not expect" not in sentence, sentence
        assert window.isVisible()
    assert len(window.shown_errors) == len(KINDS)
    assert window.settings_store.get("last_model") is None  # no hostile file is reopened at the next start
    with qtbot.waitSignal(window.bridge.modelLoaded, timeout=60_000):
        window.load_model(str(tiny_model_path))
    assert window.settings_store.get("last_model") is None  # loaded is not enough: it must answer
    stats = _send(qtbot, window, "Hello?")
    assert stats["stop_reason"] in ("length", "eos") and stats["completion_tokens"] >= 1
    assert window.settings_store.get("last_model") == window.model["name"]


def test_a_crash_mid_reply_keeps_the_partial_reply_and_the_window(qtbot, window, starter_model_path):
    with qtbot.waitSignal(window.bridge.modelLoaded, timeout=60_000):
        window.load_model(str(starter_model_path))
    window.defaults["max_tokens"] = 400
    killed = []

    def kill_once(*_):
        if not killed:
            killed.append(window.model["pid"])
            os.kill(window.model["pid"], signal.SIGKILL)

    window.bridge.turnText.connect(kill_once)
    stats = _send(qtbot, window, "Tell me a long story about a lighthouse.")
    assert killed and stats["stop_reason"] == "error" and "killed" in stats["error"]
    assert window.settings_store.get("last_model") is None  # a model whose reply failed is not reopened
    saved = window.history.get_conversation(window.current_id).thread[-1]
    assert saved.status == "error" and saved.content == stats["reply"] and saved.content
    window.defaults["max_tokens"] = 4
    again = _send(qtbot, window, "Still there?")  # a fresh runner starts for it
    assert again["stop_reason"] in ("length", "eos", "repetition")

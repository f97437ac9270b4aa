"""Settings: defaults for every chat, overrides kept with one conversation."""

import pytest

from assistant.engine import GenerationSettings
from assistant.preferences import generation_settings as conversation_settings
from assistant.preferences import load_preferences, save_preferences
from common.settings_store import SettingsStore
from ui.settings_dialog import DEFAULTS, PRESETS, SettingsDialog


def test_defaults_round_trip_through_the_data_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("ASSISTANT_HOME", str(tmp_path / "home"))
    store = SettingsStore()
    assert store.path == tmp_path / "home" / "settings.json"  # ASSISTANT_HOME isolates settings too
    assert load_preferences(store) == DEFAULTS
    save_preferences(store, {**DEFAULTS, "temperature": 0.2, "theme": "dark", "unknown": 1})
    loaded = load_preferences(SettingsStore())
    assert loaded["temperature"] == 0.2 and loaded["theme"] == "dark" and "unknown" not in loaded


def test_defaults_are_written_in_one_place():
    """The window's defaults are GenerationSettings' own, as the CLI's options are."""
    g = GenerationSettings()
    assert (DEFAULTS["temperature"], DEFAULTS["top_k"], DEFAULTS["max_tokens"]) == (g.temperature, g.top_k, g.max_tokens)
    assert conversation_settings(DEFAULTS, None) == g


def test_a_damaged_settings_file_is_set_aside_and_defaults_are_used(tmp_path):
    path = tmp_path / "settings.json"
    path.write_text("{not json")
    store = SettingsStore(path)
    assert load_preferences(store) == DEFAULTS
    assert list(tmp_path.glob("settings.damaged-*.json"))
    store.set("last_model", "starter")
    assert SettingsStore(path).get("last_model") == "starter"


def test_the_settings_dialog_edits_the_defaults_only_and_names_the_chats_own(qtbot):
    dialog = SettingsDialog(dict(DEFAULTS), {"temperature": 0.5, "source": "api"}, gpu=False)
    qtbot.addWidget(dialog)
    assert dialog.gpu_layers is None  # no GPU build: no GPU control
    assert dialog.temperature.value() == DEFAULTS["temperature"]  # the defaults, not the chat's value
    assert dialog.override_note.text() == "The open chat keeps its own temperature."
    dialog.temperature.setValue(1.1)
    dialog.policy.setCurrentIndex(dialog.policy.findData("stop"))
    dialog.preset.setCurrentText("Code reviewer")
    defaults, overrides = dialog.result_settings()
    assert overrides is None and defaults["temperature"] == 1.1 and defaults["context_policy"] == "stop"
    assert defaults["system_prompt"].startswith("You are a careful senior engineer")
    assert conversation_settings(defaults, None).temperature == 1.1


def test_a_preset_turns_custom_once_its_text_is_rewritten(qtbot):
    dialog = SettingsDialog(dict(DEFAULTS), None, gpu=False)
    qtbot.addWidget(dialog)
    assert dialog.preset.currentText() == "None"
    dialog.preset.setCurrentText("Translator")
    assert dialog.system.toPlainText().startswith("Translate the user's text")
    dialog.system.setPlainText("Translate into French.")
    assert dialog.preset.currentText() == "Custom"
    dialog.system.setPlainText(PRESETS["Helpful assistant"])  # the text of a preset again: its name again
    assert dialog.preset.currentText() == "Helpful assistant"
    dialog.preset.setCurrentText("Custom")  # choosing Custom keeps the text
    assert dialog.system.toPlainText() == PRESETS["Helpful assistant"]


def test_zero_values_read_auto_or_no_limit_with_tooltips(qtbot):
    dialog = SettingsDialog({**DEFAULTS, "n_ctx": 0, "n_threads": 0, "max_tokens": None}, None, gpu=True)
    qtbot.addWidget(dialog)
    assert dialog.n_ctx.text() == "Auto" and dialog.n_threads.text() == "Auto"
    assert dialog.max_tokens.text() == "No limit"
    assert "4,096" in dialog.n_ctx.toolTip() and "physical core" in dialog.n_threads.toolTip()
    dialog.gpu_layers.setValue(-1)
    assert dialog.gpu_layers.text() == "All"


def test_the_chats_own_dialog_keeps_only_what_the_user_changed(qtbot):
    from ui.settings_dialog import ConversationSettingsDialog

    dialog = ConversationSettingsDialog(dict(DEFAULTS), {"source": "api", "top_k": 7}, title="T",
                                        system_prompt="Be brief.")
    qtbot.addWidget(dialog)
    assert dialog.sampling.top_k.value() == 7 and dialog.status.text() == "This chat keeps its own top-k."
    dialog.sampling.temperature.setValue(0.3)
    settings = dialog.result_settings()
    assert settings == {"source": "api", "top_k": 7, "temperature": 0.3}  # other values follow the defaults
    defaults = {**DEFAULTS, "top_p": 0.5}
    merged = conversation_settings(defaults, settings)
    assert (merged.temperature, merged.top_k, merged.top_p) == (0.3, 7, 0.5)
    dialog.use_defaults()
    assert dialog.result_settings() == {"source": "api"} and dialog.status.text() == "This chat follows the defaults."
    assert dialog.sampling.top_k.value() == DEFAULTS["top_k"]


def test_gpu_layers_show_only_with_a_gpu_build(qtbot):
    dialog = SettingsDialog(dict(DEFAULTS), None, gpu=True)
    qtbot.addWidget(dialog)
    assert dialog.gpu_layers is not None and not dialog.override_note.isVisibleTo(dialog)
    dialog.gpu_layers.setValue(20)
    assert dialog.result_settings()[0]["n_gpu_layers"] == 20


@pytest.fixture
def recording_window(qtbot, tmp_path):
    """The real window on a fake engine that keeps the settings each reply was asked with."""
    from tests.support.fake_engine import FakeEngine
    from tests.support.window import open_window

    class Recording(FakeEngine):
        captured: list = []

        def chat(self, messages, settings=None):
            self.captured.append(settings)
            return super().chat(messages, settings)

    window = open_window(qtbot, tmp_path, Recording())
    with qtbot.waitSignal(window.bridge.modelLoaded, timeout=10_000):
        window.load_model("m")
    yield window, Recording.captured
    window.close()


def test_a_conversations_own_settings_reach_its_next_reply(qtbot, recording_window):
    window, captured = recording_window
    window.input.edit.setPlainText("one")
    with qtbot.waitSignal(window.bridge.turnFinished, timeout=10_000):
        window.input._submit()
    qtbot.waitUntil(lambda: not window.generating)
    window.services.chat.set_conversation_settings(window.current_id, {"temperature": 0.1, "max_tokens": 3})
    window.input.edit.setPlainText("two")
    with qtbot.waitSignal(window.bridge.turnFinished, timeout=10_000) as done:
        window.input._submit()
    assert captured[-1].temperature == 0.1 and done.args[0].stats["completion_tokens"] == 3


def test_a_new_default_reaches_the_next_reply_of_an_open_conversation(qtbot, recording_window):
    """A conversation keeps only the overrides its user chose, so a changed default reaches its next reply."""
    window, captured = recording_window
    for text, temperature in (("one", 0.8), ("two", 0.3)):
        window.defaults["temperature"] = temperature
        window.input.edit.setPlainText(text)
        with qtbot.waitSignal(window.bridge.turnFinished, timeout=10_000):
            window.input._submit()
        qtbot.waitUntil(lambda: not window.generating)
    assert [s.temperature for s in captured] == [0.8, 0.3]
    assert window.history.get_conversation(window.current_id).settings in (None, {})


@pytest.mark.parametrize("bad", [
    {"temperature": "hot", "top_k": 1e30, "seed": "x", "max_tokens": -5, "context_policy": 3, "top_p": None,
     "min_p": float("nan"), "repeat_penalty": True, "stop_on_repetition": "no"},
    {"temperature": [1], "top_k": {"a": 1}, "seed": 2**40, "max_tokens": 10**30},
])
def test_settings_from_outside_never_stop_the_dialogs(qtbot, bad):
    """A hand-edited settings.json or an imported conversation may hold anything: the dialogs show
    a value in range (the default for one that is not a number) and save numbers."""
    from ui.settings_dialog import ConversationSettingsDialog

    dialog = SettingsDialog({**DEFAULTS, **bad, "n_ctx": "big", "system_prompt": 5}, bad, gpu=True)
    qtbot.addWidget(dialog)
    defaults, _ = dialog.result_settings()
    settings = conversation_settings(defaults, None)
    assert 0 <= settings.temperature <= 2 and 0 <= settings.top_k <= 1000 and defaults["system_prompt"] == ""
    chat = ConversationSettingsDialog(dict(DEFAULTS), bad, title="<b>x</b>", system_prompt=None)
    qtbot.addWidget(chat)
    merged = conversation_settings(DEFAULTS, chat.result_settings())
    assert 0 <= merged.top_p <= 1 and (merged.max_tokens is None or merged.max_tokens <= 1_000_000)
    assert ConversationSettingsDialog(dict(DEFAULTS), ["not", "a", "dict"], title="t",
                                      system_prompt="p").result_settings() == {}


def test_the_window_says_which_settings_in_settings_json_were_replaced(qtbot, tmp_path):
    """A hand-edited settings file: the window opens on the defaults and says, above the chat, what was
    wrong and where; dismissing the notice hides it for this session."""
    import json

    from tests.support.fake_engine import FakeEngine
    from tests.support.window import open_window

    (tmp_path / "settings.json").write_text(json.dumps(
        {"defaults": {"temperature": "hot", "top_k": -3}, "last_model": ["not", "a", "name"]}))
    window = open_window(qtbot, tmp_path, FakeEngine())
    texts = [row.label.text() for row in window.notices.rows]
    assert any("defaults.temperature" in t and "settings.json" in t for t in texts)
    assert any("defaults.top_k" in t for t in texts)
    assert window.defaults["temperature"] == DEFAULTS["temperature"]
    row = next(r for r in window.notices.rows if "temperature" in r.label.text())
    row.dismiss.click()
    assert all("temperature" not in r.label.text() for r in window.notices.rows)
    window.notices.refresh()  # a history refresh does not bring a dismissed one back
    assert all("temperature" not in r.label.text() for r in window.notices.rows)
    window.close()

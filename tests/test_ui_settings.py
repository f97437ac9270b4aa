"""Settings: defaults for every chat, overrides kept with one conversation."""

from PySide6.QtCore import QSettings

from ui.settings_dialog import DEFAULTS, SettingsDialog, conversation_settings, load_defaults, save_defaults


def test_defaults_round_trip_through_qsettings(tmp_path):
    qs = QSettings(str(tmp_path / "s.ini"), QSettings.IniFormat)
    assert load_defaults(qs) == DEFAULTS
    save_defaults(qs, {**DEFAULTS, "temperature": 0.2, "theme": "dark", "unknown": 1})
    loaded = load_defaults(qs)
    assert loaded["temperature"] == 0.2 and loaded["theme"] == "dark" and "unknown" not in loaded


def test_the_dialog_edits_defaults_or_one_conversation(qtbot):
    dialog = SettingsDialog(dict(DEFAULTS), {"temperature": 0.5}, gpu=False)
    qtbot.addWidget(dialog)
    assert dialog.gpu_layers is None  # no GPU build: no GPU control
    assert dialog.temperature.value() == 0.5 and dialog.scope.isChecked()
    dialog.temperature.setValue(1.1)
    dialog.policy.setCurrentIndex(dialog.policy.findData("stop"))
    dialog.preset.setCurrentText("Code reviewer")
    defaults, overrides = dialog.result_settings()
    assert overrides["temperature"] == 1.1 and overrides["context_policy"] == "stop"
    assert defaults["temperature"] == DEFAULTS["temperature"]  # only this conversation changed
    assert defaults["system_prompt"].startswith("You are a careful senior engineer")
    settings = conversation_settings(defaults, overrides)
    assert settings.temperature == 1.1 and settings.context_policy.value == "stop"

    dialog.scope.setChecked(False)
    defaults, overrides = dialog.result_settings()
    assert overrides is None and defaults["temperature"] == 1.1


def test_gpu_layers_show_only_with_a_gpu_build(qtbot):
    dialog = SettingsDialog(dict(DEFAULTS), None, gpu=True)
    qtbot.addWidget(dialog)
    assert dialog.gpu_layers is not None and not dialog.scope.isEnabled()
    dialog.gpu_layers.setValue(20)
    assert dialog.result_settings()[0]["n_gpu_layers"] == 20


def test_a_conversations_own_settings_reach_its_next_reply(qtbot, tmp_path):
    from assistant.history import HistoryStore
    from tests.support.fake_engine import FakeEngine
    from ui.main_window import MainWindow

    db = tmp_path / "h.db"
    captured = []

    class Recording(FakeEngine):
        def chat(self, messages, settings=None):
            captured.append(settings)
            return super().chat(messages, settings)

    window = MainWindow(Recording, HistoryStore.open(db), lambda: HistoryStore.open(db),
                        settings=QSettings(str(tmp_path / "s.ini"), QSettings.IniFormat))
    qtbot.addWidget(window)
    with qtbot.waitSignal(window.worker.loadFinished, timeout=10_000):
        window.load_model("m")
    window.input.edit.setPlainText("one")
    with qtbot.waitSignal(window.worker.replyFinished, timeout=10_000):
        window.input._submit()
    qtbot.waitUntil(lambda: not window.generating)
    window.history.update_conversation(window.current_id, settings={"temperature": 0.1, "max_tokens": 3})
    window.input.edit.setPlainText("two")
    with qtbot.waitSignal(window.worker.replyFinished, timeout=10_000) as done:
        window.input._submit()
    assert captured[-1].temperature == 0.1 and done.args[2]["completion_tokens"] == 3
    window.engine_thread.stop()

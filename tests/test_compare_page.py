"""The Compare page and the base-model notice, in the real window on real services.

The scripted engine stands at the engine boundary for the fast tests; one test runs
the real engine on the two built-in model files.
"""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox

from tests.support.fake_engine import FakeEngine
from tests.support.window import open_window

REPLY = "Rayleigh scattering: **short** blue light is scattered most."


class Engine(FakeEngine):
    """The scripted engine, with `gemma3-270m-base` a base model (as the real one is) and a record of requests."""

    def __init__(self, **kw):
        super().__init__(reply=REPLY, token_delay=0.001, load_delay=0.01, **kw)
        self.requests: list[tuple[str, str, object]] = []  # (model, chat|complete, messages or prompt)

    def load(self, spec, settings=None, *, automatic=False):
        summary = super().load(spec, settings, automatic=automatic)
        summary.is_base = summary.name == "gemma3-270m-base"
        summary.spec = summary.name
        return summary

    def chat(self, messages, settings=None):
        self.requests.append((self._summary.name, "chat", messages))
        return super().chat(messages, settings)

    def complete(self, prompt, settings=None):
        self.requests.append((self._summary.name, "complete", prompt))
        return super().complete(prompt, settings)


@pytest.fixture
def window(qtbot, tmp_path, monkeypatch):
    monkeypatch.setattr(QMessageBox, "warning", lambda *a, **k: None)
    engine = Engine()
    w = open_window(qtbot, tmp_path, engine)
    w.engine = engine
    w.show()
    with qtbot.waitSignal(w.bridge.modelLoaded, timeout=10_000):
        w.load_model("mine")
    yield w
    w.close()


def _page(qtbot, window):
    window.compare_action.trigger()  # the toolbar's Compare
    page = window.compare_page
    assert window.pages.currentWidget() is page
    return page


def _items(page):
    return [(page.model_list.item(i).text(), page.model_list.item(i).data(Qt.ItemDataRole.UserRole))
            for i in range(page.model_list.count())]


def _run(qtbot, page, prompt="Why is the sky blue?", models=("starter", "gemma3-270m-base")):
    page.set_checked(list(models))
    page.prompt_edit.setPlainText(prompt)
    with qtbot.waitSignal(page.runFinished, timeout=20_000) as done:
        qtbot.mouseClick(page.run_button, Qt.MouseButton.LeftButton)
    return done.args[0]


def test_the_page_offers_the_family_first_then_every_installed_model(qtbot, window):
    with qtbot.waitSignal(window.bridge.modelLoaded, timeout=10_000):
        window.load_model("gemma3-270m-base")
    page = _page(qtbot, window)
    items = _items(page)
    texts = [t for t, _ in items]
    assert texts[0] == "Sizes of the loaded model's family"
    assert texts[1:5] == ["Gemma 3 270M · loaded · base model", "Gemma 3 1B · not installed",
                          "Gemma 3 4B · not installed", "Gemma 3 12B · not installed"]
    assert "Installed" in texts and ("SmolLM2 135M", "starter") in items
    not_installed = page.model_list.item(2)
    assert not not_installed.flags() & Qt.ItemFlag.ItemIsEnabled  # shown, not checkable
    # The loaded model and the starter are checked to begin with: "is the small model enough?"
    assert page.checked_models() == ["gemma3-270m-base", "starter"]


def test_a_comparison_streams_side_by_side_with_figures_and_verdicts(qtbot, window):
    page = _page(qtbot, window)
    result = _run(qtbot, page)
    assert [c.spec for c in page.columns] == ["starter", "gemma3-270m-base"]
    assert page.column_texts() == [REPLY + " ", REPLY + " "]
    col = page.columns[0]
    assert "<strong>short</strong>" in col.body.toHtml() or "font-weight" in col.body.toHtml()  # Markdown
    assert col.figure_labels["gen_tps"].text().endswith("tok/s")
    assert col.figure_labels["weights_bytes"].text() == "700 MB" and col.figure_labels["quant"].text() == "Q4_K_M"
    assert col.figure_labels["rss_peak_bytes"].text() == "950 MB" and col.status.text() == "done"
    # Every model got the same prompt; the window's own model is back afterwards.
    asked = [(m, msgs[-1]["content"]) for m, kind, msgs in window.engine.requests if kind == "chat"]
    assert asked == [("starter", "Why is the sky blue?"), ("gemma3-270m-base", "Why is the sky blue?")]
    qtbot.waitUntil(lambda: window.model.get("name") == "mine", timeout=10_000)
    # Verdicts go to the history at once.
    cid = result.comparison_ids[0]
    qtbot.mouseClick(page.columns[0].good, Qt.MouseButton.LeftButton)
    qtbot.mouseClick(page.columns[1].not_good, Qt.MouseButton.LeftButton)
    saved = window.history.get_comparison(cid)
    assert [a.verdict for a in saved.answers] == ["good", "not_good"]
    qtbot.mouseClick(page.columns[1].best, Qt.MouseButton.LeftButton)  # the best one was good enough
    saved = window.history.get_comparison(cid)
    assert [(a.best, a.verdict) for a in saved.answers] == [(False, "good"), (True, "good")]
    assert page.columns[1].good.isChecked() and not page.columns[1].not_good.isChecked()
    qtbot.mouseClick(page.columns[0].best, Qt.MouseButton.LeftButton)  # one best per comparison
    assert [c.best.isChecked() for c in page.columns] == [True, False]
    # The scripted engine gives both the same figures; the real sentence is tested on saved records.
    assert page.summary.text().startswith("On your 1 comparison, ") and "was good enough in 1" in page.summary.text()
    assert page.saved_list.count() == 1 and "SmolLM2 135M ★" in page.saved_list.item(0).text()


def test_the_chat_waits_and_keeps_its_own_model(qtbot, window):
    page = _page(qtbot, window)
    window.engine.token_delay = 0.01
    page.set_checked(["starter", "gemma3-270m-base"])
    page.prompt_edit.setPlainText("Compare me")
    with qtbot.waitSignal(page.runFinished, timeout=20_000):
        page.start()
        window.input.edit.setPlainText("a chat meanwhile")
        window.send("a chat meanwhile")
    qtbot.waitUntil(lambda: not window.generating, timeout=10_000)
    chats = [(m, msgs[-1]["content"]) for m, kind, msgs in window.engine.requests if kind == "chat"]
    assert chats[-1] == ("mine", "a chat meanwhile")  # the model put back first, then the chat


def test_a_prompt_set_runs_as_a_batch_and_is_reviewed_prompt_by_prompt(qtbot, window):
    window.history.save_prompt_set("daily", ["first task", "second task", "third task"])
    page = _page(qtbot, window)
    assert page.sets_combo.currentData() == "daily"
    page.set_checked(["starter", "gemma3-270m-base"])
    with qtbot.waitSignal(page.runFinished, timeout=30_000) as done:
        qtbot.mouseClick(page.run_set_button, Qt.MouseButton.LeftButton)
    result = done.args[0]
    assert len([c for c in result.comparison_ids if c]) == 3
    assert window.engine.loads[-3:] == ["starter", "gemma3-270m-base", "mine"]  # one load per model
    assert page.nav.isVisible() and page.batch_table.isVisible() and page.batch_table.rowCount() == 2
    assert page.batch_table.item(0, 0).text() == "SmolLM2 135M" and page.batch_table.item(0, 1).text() == "3"
    page._show_prompt(0)
    assert page.prompt_label.text() == "Prompt 1 of 3: first task"
    qtbot.mouseClick(page.next_button, Qt.MouseButton.LeftButton)
    assert page.prompt_label.text().startswith("Prompt 2 of 3") and page.column_texts()[0] == REPLY + " "
    qtbot.mouseClick(page.columns[0].good, Qt.MouseButton.LeftButton)
    assert page.batch_table.item(0, 4).text() == "1 of 1 judged"


def test_a_saved_comparison_is_shown_again_and_runs_on_other_models(qtbot, window):
    page = _page(qtbot, window)
    first = _run(qtbot, page, "Name a fruit.")
    qtbot.waitUntil(lambda: window.model.get("name") == "mine", timeout=10_000)  # the user's model, put back
    page.prompt_edit.clear()
    page.refresh_saved()
    page.saved_list.setCurrentRow(0)
    page.show_saved(first.comparison_ids[0])
    assert page.prompt_edit.toPlainText() == "Name a fruit." and len(page.columns) == 2
    page.set_checked(["mine", "gemma3-270m-base"])
    page.saved_list.setCurrentRow(0)
    with qtbot.waitSignal(page.runFinished, timeout=20_000, raising=False) as done:
        qtbot.mouseClick(page.rerun_button, Qt.MouseButton.LeftButton)
    assert done.signal_triggered, (page.status.text(), page.run, page.rerun_button.isEnabled(),
                                   page.rerun_button.isVisible(), page.saved_list.currentItem())
    again = window.history.get_comparison(done.args[0].comparison_ids[0])
    assert again.models == ["mine", "gemma3-270m-base"] and again.prompt == "Name a fruit."
    assert again.rerun_of == window.history.get_comparison(first.comparison_ids[0]).uid
    # Search finds it by prompt and answer.
    page.saved_search.setText("scattered")
    qtbot.waitUntil(lambda: page.saved_list.count() == 2 and "Name a fruit" in page.saved_list.item(0).text(),
                    timeout=5_000)


def test_mistakes_are_said_on_the_page(qtbot, window):
    page = _page(qtbot, window)
    page.set_checked(["starter"])
    page.prompt_edit.setPlainText("x")
    page.start()
    assert page.status.text() == "Check at least two models to compare." and page.run is None
    page.set_checked(["starter", "missing-model"])
    page.prompt_edit.clear()
    page.start()
    assert page.status.text() == "Write a prompt first."
    # A model that cannot load fails its own column; the other answers.
    page.add_edit.setText("missing-model")
    page._add_typed_model()
    result = _run(qtbot, page, "x", models=("starter", "missing-model"))
    assert result.answers[0][0].ok and not result.answers[0][1].ok
    assert page.columns[1].status.text() == "failed" and "missing-model" in page.columns[1].status.toolTip()
    assert "failed" in page.status.text()


def test_stop_keeps_what_finished(qtbot, window):
    page = _page(qtbot, window)
    window.engine.token_delay = 0.05
    window.engine.reply = "word " * 400  # 20 s of reply: the stop lands mid-answer even on a loaded machine
    page.set_checked(["starter", "gemma3-270m-base"])
    page.prompt_edit.setPlainText("long")
    with qtbot.waitSignal(page.runFinished, timeout=20_000) as done:
        page.start()
        qtbot.waitUntil(lambda: page.column_texts()[0] != "", timeout=10_000)
        qtbot.mouseClick(page.stop_button, Qt.MouseButton.LeftButton)
    result = done.args[0]
    assert result.cancelled and result.answers[0][0].status == "stopped" and result.answers[0][1] is None
    assert page.status.text().startswith("Stopped") and page.run_button.isEnabled()


def test_prompt_sets_are_made_and_deleted_on_the_page(qtbot, window, monkeypatch):
    from ui import compare_page

    page = _page(qtbot, window)

    class Filled(compare_page.PromptSetDialog):
        def exec(self):
            self.name.setText("writing")
            self.prompts.setPlainText("Summarise this text:\nline two\n\nWrite a haiku.")
            return True

    monkeypatch.setattr(compare_page, "PromptSetDialog", Filled)
    page.new_set()
    saved = window.history.get_prompt_set("writing")
    assert saved.prompts == ["Summarise this text:\nline two", "Write a haiku."]
    assert page.sets_combo.currentData() == "writing"
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Yes)
    page.delete_set()
    assert window.history.prompt_sets() == [] and not page.run_set_button.isEnabled()


# --- The base-model notice ---------------------------------------------------------------------------------------


def test_a_base_model_shows_the_notice_with_a_one_click_switch(qtbot, window):
    assert window.base_notice.isHidden()
    with qtbot.waitSignal(window.bridge.modelLoaded, timeout=10_000):
        window.load_model("gemma3-270m-base")
    notice = window.base_notice
    assert notice.isVisible() and "Gemma 3 270M" in notice.label.text() and "base model" in notice.label.text()
    assert notice.switch_button.text() == "Switch to SmolLM2 135M"
    with qtbot.waitSignal(window.bridge.modelLoaded, timeout=10_000):
        qtbot.mouseClick(notice.switch_button, Qt.MouseButton.LeftButton)
    assert window.model["name"] == "starter" and notice.isHidden()


def test_text_completion_mode_sends_the_text_to_be_continued(qtbot, window):
    with qtbot.waitSignal(window.bridge.modelLoaded, timeout=10_000):
        window.load_model("gemma3-270m-base")
    window.base_notice.completion.setChecked(True)
    assert "continue" in window.input.edit.placeholderText()
    window.input.edit.setPlainText("Once upon a time")
    with qtbot.waitSignal(window.bridge.turnFinished, timeout=10_000):
        qtbot.keyClick(window.input.edit, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: not window.generating, timeout=10_000)
    assert window.engine.requests[-1] == ("gemma3-270m-base", "complete", "Once upon a time")
    conv = window.history.get_conversation(window.current_id)
    assert [m.role for m in conv.thread] == ["user", "assistant"] and conv.thread[0].content == "Once upon a time"
    assert [w.role for w in window.chat.widgets.values()] == ["user", "assistant"]
    # Switching to an instruction-tuned model leaves text completion: chat turns again.
    with qtbot.waitSignal(window.bridge.modelLoaded, timeout=10_000):
        window.load_model("starter")
    assert not window.base_notice.completion_mode
    window.input.edit.setPlainText("hello")
    with qtbot.waitSignal(window.bridge.turnFinished, timeout=10_000):
        qtbot.keyClick(window.input.edit, Qt.Key.Key_Return)
    assert window.engine.requests[-1][:2] == ("starter", "chat")


# --- The settings: the reply limit and the loop guard -----------------------------------------------------------


def test_the_settings_show_the_reply_limit_and_the_loop_guard(qtbot):
    from assistant.preferences import generation_settings
    from ui.settings_dialog import DEFAULTS, SettingsDialog

    dialog = SettingsDialog(dict(DEFAULTS), None, gpu=False)
    qtbot.addWidget(dialog)
    assert dialog.max_tokens.value() == 2048 and "2048" in dialog.max_tokens.toolTip().replace(",", "")
    assert dialog.max_tokens_default.text() == "Default (2,048)" and dialog.loop_guard.isChecked()
    dialog.no_limit.click()
    assert dialog.max_tokens.text() == "No limit"
    dialog.loop_guard.setChecked(False)
    defaults, _ = dialog.result_settings()
    settings = generation_settings(defaults)
    assert settings.max_tokens is None and settings.stop_on_repetition is False
    dialog = SettingsDialog(defaults, None, gpu=False)
    qtbot.addWidget(dialog)
    assert dialog.max_tokens.text() == "No limit" and not dialog.loop_guard.isChecked()
    dialog.max_tokens_default.click()
    assert generation_settings(dialog.result_settings()[0]).max_tokens == 2048


# --- The real engine --------------------------------------------------------------------------------------------


@pytest.mark.llama_cpp
def test_the_page_compares_the_two_builtin_models_on_the_real_engine(qtbot, tmp_path, starter_model_path,
                                                                     gemma_model_path):
    from assistant.engine import EngineRouter

    w = open_window(qtbot, tmp_path, EngineRouter())
    try:
        w.defaults.update(max_tokens=12, temperature=0.0)
        w.show_compare()
        page = w.compare_page
        for path in (starter_model_path, gemma_model_path):
            page.add_edit.setText(str(path))
            page._add_typed_model()
        page.set_checked([str(starter_model_path), str(gemma_model_path)])
        page.prompt_edit.setPlainText("What is 2 + 2?")
        with qtbot.waitSignal(page.runFinished, timeout=240_000) as done:
            page.start()
        result = done.args[0]
        assert all(a.ok for a in result.answers[0]), [a.error for a in result.answers[0]]
        starter, gemma = page.columns
        assert starter.text and gemma.text and "4" in starter.text
        pids = [c.stats["transport"]["runner_pid"] for c in page.columns]
        assert pids[0] != pids[1]
        assert starter.figure_labels["quant"].text() == "Q4_1" and gemma.figure_labels["quant"].text() == "Q4_K_M"
        assert starter.figure_labels["size_bytes"].text() == "98.4 MB"
        assert gemma.figure_labels["size_bytes"].text() == "253 MB"
        assert starter.good.isEnabled()
    finally:
        w.close()


def test_a_reply_ended_by_the_loop_guard_says_so_under_it():
    from assistant.stats_format import format_stats_line

    assert format_stats_line({"stop_reason": "repetition", "completion_tokens": 300}).endswith(
        "stopped a loop (repetition)")


def test_a_remote_server_that_cannot_be_asked_is_listed_with_why(qtbot, window):
    import socket

    from assistant import remotes

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed
    remotes.add("box", f"http://127.0.0.1:{port}")
    page = _page(qtbot, window)
    qtbot.waitUntil(lambda: any("Remote servers" == t for t, _ in _items(page)), timeout=10_000)
    texts = [t for t, _ in _items(page)]
    problem = texts[texts.index("Remote servers") + 1]
    assert "box" in problem and "cannot be reached" in problem
    # A remote model can still be typed in and checked.
    page.add_edit.setText("small@box")
    page._add_typed_model()
    assert "small@box" in page.checked_models()


def test_names_and_texts_are_shown_as_text_never_as_markup(qtbot, window):
    import html

    from PySide6.QtWidgets import QLabel

    page = _page(qtbot, window)
    hostile = "missing<img src=x><b>bold</b>"  # the scripted engine cannot load "missing…": its sentence names it
    page.add_edit.setText(hostile)
    page._add_typed_model()
    result = _run(qtbot, page, "<h1>big</h1>", models=("starter", hostile))
    assert not result.answers[0][1].ok
    column = page.columns[1]
    assert column.title.text() == "<b>missing&lt;img src=x&gt;&lt;b&gt;bold&lt;/b&gt;</b>"
    assert html.escape(hostile) in column.status.toolTip() and "<img" not in column.status.toolTip()
    for label in page.findChildren(QLabel):
        if label not in (column.title, page.columns[0].title) and "<" in label.text():
            assert label.textFormat() == Qt.TextFormat.PlainText, label.accessibleName()

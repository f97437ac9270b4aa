"""Settings in two visibly separate places.

`SettingsDialog` (the toolbar's Settings) edits the defaults: what every new chat gets, and every
chat that has not chosen otherwise. `ConversationSettingsDialog` (the chat header's "This chat")
edits one conversation's own overrides, saved with it in the history. Defaults are the user's
preferences (assistant.preferences, saved in the data directory).
"""

from __future__ import annotations

import logging

from PySide6.QtCore import Qt
from PySide6.QtGui import QTextCursor
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from assistant.engine.settings import DEFAULT_MAX_TOKENS
from assistant.preferences import SAMPLING_KEYS, THINKING_KEYS, default_preferences
from ui.thinking_settings import THINKING_NAMES, ThinkingForm

CUSTOM = "Custom"
PRESETS = {
    "None": "",
    "Helpful assistant": "You are a helpful, concise assistant.",
    "Code reviewer": "You are a careful senior engineer. Review code for bugs, clarity and tests.",
    "Translator": "Translate the user's text into English, keeping its tone. Reply with the translation only.",
}
log = logging.getLogger(__name__)
DEFAULTS = default_preferences()
SAMPLING_NAMES = {"temperature": "temperature", "top_p": "top-p", "top_k": "top-k", "min_p": "min-p",
                  "repeat_penalty": "repeat penalty", "seed": "seed", "max_tokens": "reply limit",
                  "stop_on_repetition": "loop guard", "context_policy": "context policy"}


def _named(widget, name):
    widget.setAccessibleName(name)
    return widget


def _number(value, fallback: float, lo: float, hi: float) -> float:
    """A saved value as a number in range: settings files and conversations come from outside (an
    edited settings.json, an imported history), so a word, a bool or 1e300 must not stop the dialog."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:  # NaN too
        log.info("setting %r is not a number; showing %r", value, fallback)
        value = fallback
    return min(max(value, lo), hi)


def _double(name, lo, hi, step, value, fallback=None):
    box = _named(QDoubleSpinBox(), name)
    box.setRange(lo, hi)
    box.setSingleStep(step)
    box.setDecimals(2)
    box.setValue(float(_number(value, lo if fallback is None else fallback, lo, hi)))
    return box


def _int(name, lo, hi, value, fallback=None):
    box = _named(QSpinBox(), name)
    box.setRange(lo, hi)
    box.setValue(int(_number(value, lo if fallback is None else fallback, lo, hi)))
    return box


def _text(value) -> str:
    return value if isinstance(value, str) else ""


class SamplingForm(QWidget):
    """The sampling controls, shared by the defaults and a conversation's overrides."""

    def __init__(self, values: dict, parent=None):
        super().__init__(parent)
        form = QFormLayout(self)
        base = DEFAULTS
        self.temperature = _double("Temperature", 0, 2, 0.05, values.get("temperature"), base["temperature"])
        self.top_p = _double("Top-p", 0, 1, 0.01, values.get("top_p"), base["top_p"])
        self.min_p = _double("Min-p", 0, 1, 0.01, values.get("min_p"), base["min_p"])
        self.repeat = _double("Repeat penalty", 0.5, 2, 0.01, values.get("repeat_penalty"), base["repeat_penalty"])
        self.top_k = _int("Top-k", 0, 1000, values.get("top_k"), base["top_k"])
        self.top_k.setSpecialValueText("Off")
        self.top_k.setToolTip("Sample from the k likeliest tokens; 0 (Off) considers them all.")
        self.seed = _int("Seed", -1, 2**31 - 1, values.get("seed"), -1)
        self.seed.setSpecialValueText("Random")
        self.seed.setToolTip("The same seed and settings give the same reply; Random (-1) differs each time.")
        # 0 shows as "No limit"; the default is written beside it, so lifting it is a choice, not a guess.
        self.max_tokens = _int("Reply limit in tokens (0: no limit)", 0, 1_000_000, values.get("max_tokens") or 0, 0)
        self.max_tokens.setSpecialValueText("No limit")
        self.max_tokens.setSuffix(" tokens")
        self.max_tokens.setToolTip(f"A reply stops after this many tokens (default {DEFAULT_MAX_TOKENS:,}). "
                                   "0 lifts the limit: the reply then runs until the model ends it or the context "
                                   "is full.")
        limit_row = QHBoxLayout()
        limit_row.addWidget(self.max_tokens, 1)
        self.max_tokens_default = _named(QPushButton(f"Default ({DEFAULT_MAX_TOKENS:,})"), "Restore the reply limit")
        self.max_tokens_default.clicked.connect(lambda: self.max_tokens.setValue(DEFAULT_MAX_TOKENS))
        self.no_limit = _named(QPushButton("No limit"), "Lift the reply limit")
        self.no_limit.clicked.connect(lambda: self.max_tokens.setValue(0))
        limit_row.addWidget(self.max_tokens_default)
        limit_row.addWidget(self.no_limit)
        self.loop_guard = _named(QCheckBox("Stop a reply that keeps repeating itself"), "Loop guard")
        self.loop_guard.setToolTip("When the same words repeat for many tokens, the reply ends with stop reason "
                                   "'repetition' (on by default).")
        self.loop_guard.setChecked(values.get("stop_on_repetition", True) is not False)
        self.policy = _named(QComboBox(), "When the context is full")
        self.policy.addItem("Drop the oldest turns (keep the system prompt)", "drop_oldest")
        self.policy.addItem("Stop at the limit", "stop")
        self.policy.setCurrentIndex(max(0, self.policy.findData(values.get("context_policy"))))
        for label, w in (("Temperature", self.temperature), ("Top-p", self.top_p), ("Top-k", self.top_k),
                         ("Min-p", self.min_p), ("Repeat penalty", self.repeat), ("Seed", self.seed),
                         ("Reply limit", limit_row), ("Loop guard", self.loop_guard),
                         ("When the context is full", self.policy)):
            form.addRow(label, w)

    def values(self) -> dict:
        return {
            "temperature": self.temperature.value(), "top_p": self.top_p.value(), "top_k": self.top_k.value(),
            "min_p": self.min_p.value(), "repeat_penalty": self.repeat.value(),
            "seed": None if self.seed.value() < 0 else self.seed.value(),
            "max_tokens": self.max_tokens.value() or None, "context_policy": self.policy.currentData(),
            "stop_on_repetition": self.loop_guard.isChecked(),
        }


class SettingsDialog(QDialog):
    """The defaults for new chats (and every chat without its own settings), and the app's look.

    `conversation`, the open chat's own settings, is only named here ("this chat overrides …"):
    it is edited in the chat's own dialog, so a default never silently stops at one chat."""

    def __init__(self, defaults: dict, conversation: dict | None = None, *, gpu: bool, draft_offer: str | None = None,
                 parent=None):
        super().__init__(parent)
        self.setWindowTitle("Settings — defaults for new chats")
        self.setAccessibleName("Settings")
        self.setMinimumWidth(560)
        self.defaults = dict(defaults)
        layout = QVBoxLayout(self)
        intro = QLabel("These defaults apply to every new chat, and to every chat that has not chosen its own "
                       "settings. To change one chat only, use “This chat” in its header.")
        intro.setWordWrap(True)
        intro.setObjectName("dialogIntro")
        layout.addWidget(intro)
        own = conversation if isinstance(conversation, dict) else {}
        overridden = [SAMPLING_NAMES[k] for k in SAMPLING_KEYS if k in own]
        overridden += [THINKING_NAMES[k] for k in THINKING_KEYS if k in own]
        self.override_note = QLabel(f"The open chat keeps its own {', '.join(overridden)}." if overridden else "")
        self.override_note.setObjectName("dialogNote")
        self.override_note.setWordWrap(True)
        self.override_note.setVisible(bool(overridden))
        layout.addWidget(self.override_note)
        tabs = QTabWidget()
        tabs.setAccessibleName("Settings sections")
        self.tabs = tabs
        layout.addWidget(tabs)

        # Prompt
        prompt_page = QWidget()
        form = QFormLayout(prompt_page)
        self.preset = _named(QComboBox(), "System prompt preset")
        self.preset.addItems([*PRESETS, CUSTOM])
        self.system = _named(QPlainTextEdit(_text(self.defaults.get("system_prompt"))), "System prompt")
        self.system.setMinimumHeight(100)
        self.system.setTabChangesFocus(True)
        self._match_preset()
        self.preset.currentTextChanged.connect(self._preset_chosen)
        self.system.textChanged.connect(self._match_preset)
        form.addRow("Preset", self.preset)
        form.addRow("System prompt\n(new chats)", self.system)
        tabs.addTab(prompt_page, "Prompt")

        # Sampling
        self.sampling = SamplingForm(self.defaults)
        for name in ("temperature", "top_p", "min_p", "repeat", "top_k", "seed", "max_tokens", "max_tokens_default",
                     "no_limit", "loop_guard", "policy"):
            setattr(self, name, getattr(self.sampling, name))
        tabs.addTab(self.sampling, "Sampling")

        # Thinking (reasoning models)
        self.thinking = ThinkingForm(self.defaults)
        tabs.addTab(self.thinking, "Thinking")

        # Model
        model_page = QWidget()
        form = QFormLayout(model_page)
        self.n_ctx = _int("Context length (0: the model's own, up to 4,096)", 0, 1_048_576,
                          self.defaults.get("n_ctx") or 0, 0)
        self.n_ctx.setSpecialValueText("Auto")
        self.n_ctx.setSuffix(" tokens")
        self.n_ctx.setToolTip("How many tokens the model keeps in view. Auto (0) uses the model's own length, "
                              "at most 4,096.")
        self.n_threads = _int("Threads (0: the physical cores)", 0, 256, self.defaults.get("n_threads") or 0, 0)
        self.n_threads.setSpecialValueText("Auto")
        self.n_threads.setToolTip("CPU threads for generation. Auto (0) uses one per physical core; more than "
                                  "the free cores slows every reply down.")
        form.addRow("Context length", self.n_ctx)
        form.addRow("Threads", self.n_threads)
        self.gpu_layers = None
        if gpu:  # only a GPU build can offload; do not show a control that does nothing
            value = self.defaults.get("n_gpu_layers")
            self.gpu_layers = _int("GPU layers (-1 all)", -1, 999, -1 if value is None else value, -1)
            self.gpu_layers.setSpecialValueText("All")
            form.addRow("GPU layers", self.gpu_layers)
        self.kv_cache_type = _named(QComboBox(), "KV cache type")
        for label, value in (("f16 (full precision)", "f16"), ("q8_0 (about half the memory)", "q8_0"),
                             ("q4_0 (about a quarter)", "q4_0")):
            self.kv_cache_type.addItem(label, value)
        self.kv_cache_type.setCurrentIndex(max(0, self.kv_cache_type.findData(self.defaults.get("kv_cache_type"))))
        self.kv_cache_type.setToolTip("How the context's keys and values are stored. q8_0 halves the KV cache with "
                                      "little loss; a quantized cache turns flash attention on.")
        self.flash_attn = _named(QComboBox(), "Flash attention")
        for label, value in (("Auto (where the hardware supports it)", "auto"), ("On", "on"), ("Off", "off")):
            self.flash_attn.addItem(label, value)
        self.flash_attn.setCurrentIndex(max(0, self.flash_attn.findData(self.defaults.get("flash_attn"))))
        form.addRow("KV cache", self.kv_cache_type)
        form.addRow("Flash attention", self.flash_attn)
        self.template = _named(QPlainTextEdit(_text(self.defaults.get("chat_template"))), "Chat template override")
        self.template.setPlaceholderText("Leave empty to use the model's own template (Jinja, sandboxed)")
        self.template.setMaximumHeight(90)
        self.template.setTabChangesFocus(True)
        form.addRow("Chat template", self.template)
        self.draft = _named(QComboBox(), "Drafting")
        for label, value in (("Automatic: a smaller model of the same family, when installed", "auto"),
                             ("Prompt lookup: drafts copied from the conversation", "lookup"), ("Off", "off")):
            self.draft.addItem(label, value)
        self.draft.setCurrentIndex(max(0, self.draft.findData(self.defaults.get("draft") or "auto")))
        self.draft.setToolTip("Speculative decoding: a small model (or the conversation itself) drafts a few tokens "
                              "and the model checks them at once; the reply is the same, only faster. Drafting "
                              "pauses itself when it does not pay. Applies when a model is next loaded.")
        form.addRow("Drafting", self.draft)
        self.draft_offer = QLabel(draft_offer or "")
        self.draft_offer.setWordWrap(True)
        self.draft_offer.setObjectName("dialogNote")
        self.draft_offer.setAccessibleName("What drafting offers the loaded model")
        self.draft_offer.setVisible(bool(draft_offer))
        form.addRow("", self.draft_offer)
        tabs.addTab(model_page, "Model")

        # Appearance
        look = QWidget()
        form = QFormLayout(look)
        self.theme = _named(QComboBox(), "Theme")
        for label, value in (("Follow the system", "system"), ("Light", "light"), ("Dark", "dark")):
            self.theme.addItem(label, value)
        self.theme.setCurrentIndex(max(0, self.theme.findData(self.defaults.get("theme"))))
        self.stats_line = _named(QComboBox(), "Statistics under replies")
        for label, value in (("Always", "always"), ("On hover", "hover"), ("Never", "never")):
            self.stats_line.addItem(label, value)
        self.stats_line.setCurrentIndex(max(0, self.stats_line.findData(self.defaults.get("stats_line"))))
        form.addRow("Theme", self.theme)
        form.addRow("Statistics under replies", self.stats_line)
        tabs.addTab(look, "Appearance")

        buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)

    # The preset names the text it wrote; once the text is rewritten it is "Custom".
    def _preset_chosen(self, name: str) -> None:
        if name in PRESETS and PRESETS[name] != self.system.toPlainText():
            self.system.setPlainText(PRESETS[name])

    def _match_preset(self) -> None:
        text = self.system.toPlainText().strip()
        name = next((n for n, t in PRESETS.items() if t == text), CUSTOM)
        if self.preset.currentText() != name:
            self.preset.blockSignals(True)
            self.preset.setCurrentText(name)
            self.preset.blockSignals(False)

    def result_settings(self) -> tuple[dict, None]:
        """(new defaults, None): this dialog never changes a conversation's own settings."""
        defaults = dict(self.defaults)
        defaults.update(system_prompt=self.system.toPlainText().strip(), n_ctx=self.n_ctx.value(),
                        n_threads=self.n_threads.value(), chat_template=self.template.toPlainText().strip(),
                        kv_cache_type=self.kv_cache_type.currentData(), flash_attn=self.flash_attn.currentData(),
                        theme=self.theme.currentData(), stats_line=self.stats_line.currentData(),
                        draft=self.draft.currentData())
        if self.gpu_layers is not None:
            defaults["n_gpu_layers"] = None if self.gpu_layers.value() < 0 else self.gpu_layers.value()
        defaults.update(self.sampling.values())
        defaults.update(self.thinking.values())
        return defaults, None


class ConversationSettingsDialog(QDialog):
    """One chat's own settings: its system prompt and the sampling values it overrides.

    Only the values the user changed here (or had changed before) are kept as overrides; the
    rest follow the defaults, so a later change of a default still reaches this chat. A new
    chat (`new_chat`) gets the same dialog: the window keeps what is chosen until the chat's
    first message creates the conversation."""

    def __init__(self, defaults: dict, settings: dict | None, *, title: str, system_prompt: str | None,
                 new_chat: bool = False, focus_prompt: bool = False, parent=None):
        super().__init__(parent)
        self.setWindowTitle(f"This chat — {title}")
        self.setAccessibleName("This chat's settings")
        self.setMinimumWidth(540)
        self.defaults = dict(defaults)
        self.settings = dict(settings) if isinstance(settings, dict) else {}
        self._overrides = {k for k in SAMPLING_KEYS if k in self.settings}
        self._thinking_overrides = {k for k in THINKING_KEYS if k in self.settings}
        self._start_prompt = _text(system_prompt).strip()
        layout = QVBoxLayout(self)
        intro = QLabel(("Settings for this new chat: kept with it once you send its first message. "
                        if new_chat else "Settings for this chat only. ")
                       + "Values you change here are kept with the chat; the others follow the defaults "
                       "(Settings in the toolbar).")
        intro.setWordWrap(True)
        intro.setObjectName("dialogIntro")
        layout.addWidget(intro)
        self.system = _named(QPlainTextEdit(_text(system_prompt)), "This chat's system prompt")
        self.system.setPlaceholderText("No system prompt: the model sees only the conversation")
        self.system.setTabChangesFocus(True)
        self.system.setMinimumHeight(70)
        self.system.setMaximumHeight(140)
        self.system.setToolTip("What the model is told before the conversation, for this chat only. It applies "
                               "from the next reply on.")
        merged = {**{k: self.defaults.get(k) for k in SAMPLING_KEYS},
                  **{k: v for k, v in self.settings.items() if k in SAMPLING_KEYS}}
        self.sampling = SamplingForm(merged)
        self.sampling.layout().insertRow(0, "System prompt", self.system)  # one form: the labels line up
        self._start = self.sampling.values()
        layout.addWidget(self.sampling)
        self.thinking = ThinkingForm({**{k: self.defaults.get(k) for k in THINKING_KEYS},
                                      **{k: v for k, v in self.settings.items() if k in THINKING_KEYS}})
        self._thinking_start = self.thinking.values()
        layout.addWidget(self.thinking)
        self.status = QLabel()
        self.status.setObjectName("dialogNote")
        self.status.setWordWrap(True)
        layout.addWidget(self.status)
        layout.addStretch(1)  # a taller dialog keeps its rows together at the top
        buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        self.reset_button = _named(buttons.addButton("Use the defaults", QDialogButtonBox.ResetRole),
                                   "Use the defaults for this chat")
        self.reset_button.clicked.connect(self.use_defaults)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self._cleared = False
        self._describe()
        if focus_prompt:
            self.system.setFocus()
            self.system.moveCursor(QTextCursor.MoveOperation.End)

    def result_system_prompt(self) -> str:
        """The chat's system prompt as edited ('' for none)."""
        return self.system.toPlainText().strip()

    def prompt_changed(self) -> bool:
        return self.result_system_prompt() != self._start_prompt

    def use_defaults(self) -> None:
        """Drop this chat's overrides: every value follows the defaults again."""
        self._overrides.clear()
        self._cleared = True
        defaults_form = SamplingForm(self.defaults)
        values = defaults_form.values()
        defaults_form.deleteLater()
        f = self.sampling
        f.temperature.setValue(values["temperature"])
        f.top_p.setValue(values["top_p"])
        f.top_k.setValue(values["top_k"])
        f.min_p.setValue(values["min_p"])
        f.repeat.setValue(values["repeat_penalty"])
        f.seed.setValue(-1 if values["seed"] is None else values["seed"])
        f.max_tokens.setValue(values["max_tokens"] or 0)
        f.loop_guard.setChecked(values["stop_on_repetition"])
        f.policy.setCurrentIndex(max(0, f.policy.findData(values["context_policy"])))
        self._start = f.values()
        self._thinking_overrides.clear()
        self.thinking.set_values(self.defaults)
        self._thinking_start = self.thinking.values()
        self._describe()

    def _describe(self) -> None:
        names = [SAMPLING_NAMES[k] for k in SAMPLING_KEYS if k in self._overrides]
        names += [THINKING_NAMES[k] for k in THINKING_KEYS if k in self._thinking_overrides]
        self.status.setText(f"This chat keeps its own {', '.join(names)}." if names
                            else "This chat follows the defaults.")

    def result_settings(self) -> dict:
        """The conversation's settings: what it had that is not sampling, plus its overrides."""
        values = self.sampling.values()
        chosen = set(self._overrides) | {k for k in SAMPLING_KEYS if values[k] != self._start[k]}
        kept = {k: v for k, v in self.settings.items() if k not in SAMPLING_KEYS and k not in THINKING_KEYS}
        thinking = self.thinking.values()
        chosen_thinking = self._thinking_overrides | {k for k in THINKING_KEYS if thinking[k] != self._thinking_start[k]}
        return {**kept, **{k: values[k] for k in SAMPLING_KEYS if k in chosen},
                **{k: thinking[k] for k in THINKING_KEYS if k in chosen_thinking}}

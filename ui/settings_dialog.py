"""Settings: defaults for every conversation, and overrides for the open one.

Defaults are the user's preferences (assistant.preferences, saved in the data
directory). A conversation's own settings are saved with it in the history, so
reopening it restores them.
"""

from PySide6.QtWidgets import (QCheckBox, QComboBox, QDialog, QDialogButtonBox, QDoubleSpinBox, QFormLayout,
                               QHBoxLayout, QPlainTextEdit, QPushButton, QSpinBox, QTabWidget, QVBoxLayout,
                               QWidget)

from assistant.engine.settings import DEFAULT_MAX_TOKENS
from assistant.preferences import SAMPLING_KEYS, default_preferences

PRESETS = {
    "None": "",
    "Helpful assistant": "You are a helpful, concise assistant.",
    "Code reviewer": "You are a careful senior engineer. Review code for bugs, clarity and tests.",
    "Translator": "Translate the user's text into English, keeping its tone. Reply with the translation only.",
}
DEFAULTS = default_preferences()


class SettingsDialog(QDialog):
    def __init__(self, defaults: dict, conversation: dict | None, *, gpu: bool, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self.setAccessibleName("Settings")
        self.defaults = dict(defaults)
        self.conversation = conversation
        merged = {**self.defaults, **({k: v for k, v in (conversation or {}).items() if k in SAMPLING_KEYS})}
        layout = QVBoxLayout(self)
        self.scope = QCheckBox("Apply sampling settings to this conversation only")
        self.scope.setAccessibleName("Apply to this conversation only")
        self.scope.setEnabled(conversation is not None)
        self.scope.setChecked(conversation is not None and any(k in (conversation or {}) for k in SAMPLING_KEYS))
        tabs = QTabWidget()
        tabs.setAccessibleName("Settings sections")
        layout.addWidget(tabs)

        # Prompt
        prompt_page = QWidget()
        form = QFormLayout(prompt_page)
        self.preset = self._named(QComboBox(), "System prompt preset")
        self.preset.addItems(list(PRESETS))
        self.system = self._named(QPlainTextEdit(self.defaults.get("system_prompt") or ""), "System prompt")
        self.system.setMinimumHeight(100)
        self.preset.currentTextChanged.connect(lambda name: self.system.setPlainText(PRESETS[name]))
        form.addRow("Preset", self.preset)
        form.addRow("System prompt\n(new chats)", self.system)
        tabs.addTab(prompt_page, "Prompt")

        # Sampling
        sampling = QWidget()
        form = QFormLayout(sampling)
        self.temperature = self._double("Temperature", 0, 2, 0.05, merged["temperature"])
        self.top_p = self._double("Top-p", 0, 1, 0.01, merged["top_p"])
        self.min_p = self._double("Min-p", 0, 1, 0.01, merged["min_p"])
        self.repeat = self._double("Repeat penalty", 0.5, 2, 0.01, merged["repeat_penalty"])
        self.top_k = self._int("Top-k", 0, 1000, merged["top_k"])
        self.seed = self._int("Seed (-1 random)", -1, 2**31 - 1, merged["seed"] if merged["seed"] is not None else -1)
        # 0 shows as "No limit"; the default is written beside it, so lifting it is a choice, not a guess.
        self.max_tokens = self._int("Reply limit in tokens (0: no limit)", 0, 1_000_000, merged["max_tokens"] or 0)
        self.max_tokens.setSpecialValueText("No limit")
        self.max_tokens.setSuffix(" tokens")
        self.max_tokens.setToolTip(f"A reply stops after this many tokens (default {DEFAULT_MAX_TOKENS:,}). "
                                   "0 lifts the limit: the reply then runs until the model ends it or the context "
                                   "is full.")
        limit_row = QHBoxLayout()
        limit_row.addWidget(self.max_tokens, 1)
        self.max_tokens_default = self._named(QPushButton(f"Default ({DEFAULT_MAX_TOKENS:,})"), "Restore the reply limit")
        self.max_tokens_default.clicked.connect(lambda: self.max_tokens.setValue(DEFAULT_MAX_TOKENS))
        self.no_limit = self._named(QPushButton("No limit"), "Lift the reply limit")
        self.no_limit.clicked.connect(lambda: self.max_tokens.setValue(0))
        limit_row.addWidget(self.max_tokens_default)
        limit_row.addWidget(self.no_limit)
        self.loop_guard = self._named(QCheckBox("Stop a reply that keeps repeating itself"), "Loop guard")
        self.loop_guard.setToolTip("When the same words repeat for many tokens, the reply ends with stop reason "
                                   "'repetition' (on by default).")
        self.loop_guard.setChecked(bool(merged.get("stop_on_repetition", True)))
        self.policy = self._named(QComboBox(), "When the context is full")
        self.policy.addItem("Drop the oldest turns (keep the system prompt)", "drop_oldest")
        self.policy.addItem("Stop at the limit", "stop")
        self.policy.setCurrentIndex(max(0, self.policy.findData(merged["context_policy"])))
        for label, w in (("Temperature", self.temperature), ("Top-p", self.top_p), ("Top-k", self.top_k),
                         ("Min-p", self.min_p), ("Repeat penalty", self.repeat), ("Seed", self.seed),
                         ("Reply limit", limit_row), ("Loop guard", self.loop_guard),
                         ("When the context is full", self.policy)):
            form.addRow(label, w)
        form.addRow(self.scope)
        tabs.addTab(sampling, "Sampling")

        # Model
        model_page = QWidget()
        form = QFormLayout(model_page)
        self.n_ctx = self._int("Context length (0 model default)", 0, 1_048_576, self.defaults.get("n_ctx") or 0)
        self.n_threads = self._int("Threads (0 physical cores)", 0, 256, self.defaults.get("n_threads") or 0)
        form.addRow("Context length", self.n_ctx)
        form.addRow("Threads", self.n_threads)
        self.gpu_layers = None
        if gpu:  # only a GPU build can offload; do not show a control that does nothing
            value = self.defaults.get("n_gpu_layers")
            self.gpu_layers = self._int("GPU layers (-1 all)", -1, 999, -1 if value is None else value)
            form.addRow("GPU layers", self.gpu_layers)
        self.template = self._named(QPlainTextEdit(self.defaults.get("chat_template") or ""), "Chat template override")
        self.template.setPlaceholderText("Leave empty to use the model's own template (Jinja, sandboxed)")
        self.template.setMaximumHeight(90)
        form.addRow("Chat template", self.template)
        tabs.addTab(model_page, "Model")

        # Appearance
        look = QWidget()
        form = QFormLayout(look)
        self.theme = self._named(QComboBox(), "Theme")
        for label, value in (("Follow the system", "system"), ("Light", "light"), ("Dark", "dark")):
            self.theme.addItem(label, value)
        self.theme.setCurrentIndex(max(0, self.theme.findData(self.defaults.get("theme"))))
        self.stats_line = self._named(QComboBox(), "Statistics under replies")
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

    def _named(self, widget, name):
        widget.setAccessibleName(name)
        return widget

    def _double(self, name, lo, hi, step, value):
        box = self._named(QDoubleSpinBox(), name)
        box.setRange(lo, hi)
        box.setSingleStep(step)
        box.setDecimals(2)
        box.setValue(float(value))
        return box

    def _int(self, name, lo, hi, value):
        box = self._named(QSpinBox(), name)
        box.setRange(lo, hi)
        box.setValue(int(value))
        return box

    def result_settings(self) -> tuple[dict, dict | None]:
        """(new defaults, this conversation's overrides or None to leave them alone)."""
        sampling = {
            "temperature": self.temperature.value(), "top_p": self.top_p.value(), "top_k": self.top_k.value(),
            "min_p": self.min_p.value(), "repeat_penalty": self.repeat.value(),
            "seed": None if self.seed.value() < 0 else self.seed.value(),
            "max_tokens": self.max_tokens.value() or None, "context_policy": self.policy.currentData(),
            "stop_on_repetition": self.loop_guard.isChecked(),
        }
        defaults = dict(self.defaults)
        defaults.update(system_prompt=self.system.toPlainText().strip(), n_ctx=self.n_ctx.value(),
                        n_threads=self.n_threads.value(), chat_template=self.template.toPlainText().strip(),
                        theme=self.theme.currentData(), stats_line=self.stats_line.currentData())
        if self.gpu_layers is not None:
            defaults["n_gpu_layers"] = None if self.gpu_layers.value() < 0 else self.gpu_layers.value()
        overrides = None
        if self.conversation is not None and self.scope.isChecked():
            overrides = {**{k: v for k, v in self.conversation.items() if k not in SAMPLING_KEYS}, **sampling}
        else:
            defaults.update(sampling)
        return defaults, overrides

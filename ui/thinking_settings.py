"""The thinking controls of a reasoning model, shared by the defaults and a chat's own settings.

On or off (the model's template switch), effort (gpt-oss's own; a thinking budget for other
families), a budget in tokens after which the model is made to answer, and the format, for a
model whose thinking is not recognised (or "none": show everything as the answer).
"""

from __future__ import annotations

from PySide6.QtWidgets import QComboBox, QFormLayout, QLabel, QSpinBox, QWidget

from assistant.engine.thinking import FORMATS, NONE
from assistant.engine.thinking_controls import EFFORT_BUDGETS, EFFORTS
from assistant.preferences import THINKING_KEYS

THINKING_NAMES = {"thinking": "thinking", "thinking_effort": "thinking effort", "thinking_budget": "thinking budget",
                  "thinking_format": "thinking format"}
FORMAT_LABELS = {"think_tags": "<think> tags (Qwen3, Qwen3.5, SmolLM3, DeepSeek-R1)",
                 "gemma4_channel": "Gemma 4 thought channel", "harmony": "Harmony channels (gpt-oss)",
                 "mistral_think": "[THINK] (Ministral 3, Magistral)"}
NO_BUDGET = -1
MAX_BUDGET = 1_000_000


def _combo(name: str, items: list[tuple[str, str | None]], value) -> QComboBox:
    box = QComboBox()
    box.setAccessibleName(name)
    for label, data in items:
        box.addItem(label, data)
    index = box.findData(value) if value is not None else 0
    box.setCurrentIndex(max(0, index))
    return box


class ThinkingForm(QWidget):
    def __init__(self, values: dict, parent=None):
        super().__init__(parent)
        form = QFormLayout(self)
        self.mode = _combo("Thinking", [("The model's default", None), ("On", "on"), ("Off", "off")],
                           values.get("thinking"))
        self.mode.setToolTip("Let a reasoning model think before it answers, or not. Its thinking is shown folded "
                             "above the answer, and counted apart in the statistics.")
        budgets = ", ".join(f"{k} {v:,}" for k, v in EFFORT_BUDGETS.items())
        self.effort = _combo("Thinking effort", [("Not set", None)] + [(e.title(), e) for e in EFFORTS],
                             values.get("thinking_effort"))
        self.effort.setToolTip(f"gpt-oss's own reasoning effort; for other models a budget in tokens ({budgets}).")
        self.budget = QSpinBox()
        self.budget.setAccessibleName("Thinking budget in tokens")
        self.budget.setRange(NO_BUDGET, MAX_BUDGET)
        self.budget.setSpecialValueText("No budget")
        self.budget.setSuffix(" tokens")
        budget = values.get("thinking_budget")
        ok = isinstance(budget, int) and not isinstance(budget, bool) and 0 <= budget <= MAX_BUDGET
        self.budget.setValue(budget if ok else NO_BUDGET)
        self.budget.setToolTip("After this many tokens of thinking the model is made to close its thinking and "
                               "answer (0: no thinking at all).")
        self.format = _combo("Thinking format", [("Detect from the model", None)]
                             + [(FORMAT_LABELS[f], f) for f in FORMATS]
                             + [("None: show everything as the answer", NONE)], values.get("thinking_format"))
        self.format.setToolTip("How the model marks its thinking. Detected from its chat template and the catalogue; "
                               "choose one only if a model's thinking shows up in its answers.")
        note = QLabel("These apply to reasoning models only; other models ignore them.")
        note.setObjectName("dialogNote")
        note.setWordWrap(True)
        form.addRow("Thinking", self.mode)
        form.addRow("Effort", self.effort)
        form.addRow("Budget", self.budget)
        form.addRow("Format", self.format)
        form.addRow(note)

    def values(self) -> dict:
        budget = self.budget.value()
        return {"thinking": self.mode.currentData(), "thinking_effort": self.effort.currentData(),
                "thinking_budget": None if budget == NO_BUDGET else budget,
                "thinking_format": self.format.currentData()}

    def set_values(self, values: dict) -> None:
        for box, key in ((self.mode, "thinking"), (self.effort, "thinking_effort"), (self.format, "thinking_format")):
            value = values.get(key)
            box.setCurrentIndex(max(0, box.findData(value)) if value is not None else 0)
        budget = values.get("thinking_budget")
        self.budget.setValue(budget if isinstance(budget, int) and not isinstance(budget, bool) else NO_BUDGET)


__all__ = ["THINKING_KEYS", "THINKING_NAMES", "ThinkingForm"]

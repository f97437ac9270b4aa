"""Today's models in the window: family ladders, a mixture of experts' active parameters, thinking and image marks.

The catalogue's 2026 families arrive with the catalogue data; here the views are checked
against entries built for the test (the fields they read: `active_params`, `thinking`,
`projector`, `older`), patched in as the catalogue.
"""

from dataclasses import replace

import pytest
import shiboken6
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from models import catalogue, speed
from models.catalogue import Family, ProjectorFile
from tests.support.fake_engine import FakeEngine
from tests.support.window import open_window
from ui.model_manager import CAT_CAN, CAT_MODEL, CAT_PARAMS, ModelManager
from ui.model_marks import SEES, THINKS, ability_words, ladder_text, params_text
from ui.workers import background_busy

REAL = catalogue._load()


def _qwen35() -> Family:
    template = next(f for f in REAL if f.id == "qwen2.5").sizes[0]
    sizes = []
    for token, params in (("0.8B", 0.8e9), ("2B", 2.0e9), ("4B", 4.0e9), ("9B", 9.0e9)):
        sizes.append(replace(template, name=f"qwen3.5-{token.lower()}", label=f"Qwen3.5 {token}", family="qwen3.5",
                             family_label="Qwen3.5 (Alibaba)", repo=f"unsloth/Qwen3.5-{token}-GGUF",
                             file=f"Qwen3.5-{token}-Q4_K_M.gguf", file_template=None, quants=("Q4_K_M",),
                             params=int(params), size_bytes=int(params * 0.6), thinking="think_tags",
                             projector=ProjectorFile(f"mmproj-Qwen3.5-{token}-F16.gguf", 200_000_000)))
    return Family("qwen3.5", "Qwen3.5 (Alibaba)", "Apache-2.0", tuple(sizes))


def _gpt_oss() -> Family:
    template = next(f for f in REAL if f.id == "qwen2.5").sizes[-1]
    entry = replace(template, name="gpt-oss-20b", label="gpt-oss 20B", family="gpt-oss",
                    family_label="gpt-oss (OpenAI)", repo="ggml-org/gpt-oss-20b-GGUF", file="gpt-oss-20b-mxfp4.gguf",
                    file_template=None, quant="MXFP4", quants=("MXFP4",), params=21_000_000_000,
                    active_params=3_600_000_000, size_bytes=12_100_000_000, thinking="harmony")
    return Family("gpt-oss", "gpt-oss (OpenAI)", "Apache-2.0", (entry,))


@pytest.fixture(autouse=True)
def today(monkeypatch):
    """Today's families first in the data, the old ones marked older (and listed after them)."""
    older = tuple(Family(f.id, f.label, f.licence, tuple(replace(e, older=True) for e in f.sizes))
                  if f.id not in ("smollm2", "gemma3") else f for f in REAL)
    families = (*older[:2], *older[2:], _qwen35(), _gpt_oss())  # the data's order: the view sorts
    monkeypatch.setattr(catalogue, "_load", lambda: families)
    monkeypatch.setattr(speed, "memory_bandwidth", lambda force=False: 20e9)
    monkeypatch.setattr(speed, "bandwidth_curve", lambda threads=None, force=False: speed.BandwidthCurve.flat(20e9))
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")


@pytest.fixture
def window(qtbot, tmp_path):
    window = open_window(qtbot, tmp_path, FakeEngine())
    window.resize(1400, 900)
    window.show()
    with qtbot.waitSignal(window.bridge.modelLoaded, timeout=10_000):
        window.load_model("qwen3.5-4b")
    idle(qtbot, window)
    yield window
    idle(qtbot, window)
    if shiboken6.isValid(window):
        window.close()


def idle(qtbot, window):
    service = window.services.library
    qtbot.waitUntil(lambda: not background_busy() and (service._pending is None or service._pending.done()),
                    timeout=30_000)
    qtbot.wait(20)


def test_the_words_for_a_shape_and_its_abilities():
    qwen, oss = _qwen35(), _gpt_oss()
    assert ladder_text(qwen) == "0.8B · 2B · 4B · 9B"
    assert params_text(oss.sizes[0]) == "21B, 3.6B active" and params_text(qwen.sizes[2]) == "4B"
    assert ability_words(qwen.sizes[0]) == f"{THINKS} · {SEES}" and ability_words(oss.sizes[0]) == THINKS
    plain = next(f for f in REAL if f.id == "smollm2").sizes[0]
    assert ability_words(plain) == "" and params_text(plain) == "135M"


def test_the_picker_shows_the_ladder_and_the_loaded_models_marks(qtbot, window):
    picker = window.model_picker
    assert list(picker.size_buttons) == ["qwen3.5-0.8b", "qwen3.5-2b", "qwen3.5-4b", "qwen3.5-9b"]
    assert [b.text().split("\n")[0].replace(" ↓", "") for b in picker.size_buttons.values()] == \
        ["0.8B", "2B", "4B", "9B"]
    assert picker.family_label.text() == "Qwen3.5"
    assert "Qwen3.5: 0.8B · 2B · 4B · 9B" in picker.family_label.toolTip()
    # The marks are icons (drawn, never a character a font may lack), their words in the tooltip.
    assert picker.marks.isVisible() and not picker.marks.pixmap().isNull()
    assert picker.marks.text() == "" and "thinks before it answers and sees images" in picker.marks.toolTip()
    nine = picker.size_buttons["qwen3.5-9b"]
    assert THINKS in nine.accessibleName() and SEES in nine.accessibleName()
    assert "9B parameters" in nine.toolTip()

    with qtbot.waitSignal(window.bridge.modelLoaded, timeout=10_000):
        window.load_model("gpt-oss-20b")  # a mixture of experts: total and active parameters
    idle(qtbot, window)
    assert list(picker.size_buttons) == ["gpt-oss-20b"]
    assert "21B, 3.6B active parameters" in picker.size_buttons["gpt-oss-20b"].toolTip()
    assert "thinks before it answers." in picker.marks.toolTip() and SEES not in picker.marks.toolTip()

    with qtbot.waitSignal(window.bridge.modelLoaded, timeout=10_000):
        window.load_model("starter")  # no marks for a model that only writes text
    assert not picker.marks.isVisible()


def test_the_catalogue_lists_todays_families_first_with_ladders_active_parameters_and_marks(qtbot, window):
    dialog: ModelManager = window.make_model_manager()
    qtbot.addWidget(dialog)
    dialog.show()
    idle(qtbot, window)
    tops = [dialog.catalogue.topLevelItem(i).text(0) for i in range(dialog.catalogue.topLevelItemCount())]
    assert tops[:4] == ["SmolLM2 (Hugging Face)   135M · 360M · 1.7B",
                        "Gemma 3 (Google)   270M · 1B · 4B · 12B",
                        "Qwen3.5 (Alibaba)   0.8B · 2B · 4B · 9B", "gpt-oss (OpenAI)   20B"]
    assert all(t.endswith("(older)") for t in tops[4:]) and len(tops) == 9  # the older families after them
    oss = dialog.catalogue_items["gpt-oss-20b"]
    assert oss.text(CAT_PARAMS) == "21B, 3.6B active" and "mixture of experts" in oss.toolTip(CAT_PARAMS)
    assert oss.text(CAT_CAN) == THINKS and not oss.icon(CAT_CAN).isNull()
    four = dialog.catalogue_items["qwen3.5-4b"]
    assert four.text(CAT_CAN) == f"{THINKS} · {SEES}" and "sees images" in four.toolTip(CAT_CAN)
    assert dialog.catalogue_items["starter"].text(CAT_CAN) == "" and dialog.catalogue_items["starter"].icon(
        CAT_CAN).isNull()
    assert four.toolTip(CAT_MODEL)  # the whole name, whatever the column's width


def test_the_marks_are_reached_by_keyboard_in_the_picker(qtbot, window):
    """Tab reaches every size in turn; each one's accessible name says what the model does."""
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow, timeout=5000)
    window.input.edit.setFocus()
    buttons = list(window.model_picker.size_buttons.values())
    reached = []
    for _ in range(40):
        qtbot.keyClick(QApplication.focusWidget(), Qt.Key_Tab)
        if QApplication.focusWidget() in buttons and QApplication.focusWidget() not in reached:
            reached.append(QApplication.focusWidget())
    assert reached == buttons  # in order, smallest first
    assert all(THINKS in b.accessibleName() and SEES in b.accessibleName() for b in reached)

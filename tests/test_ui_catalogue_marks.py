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
# Built from a real entry, under names of their own: the test holds whatever the catalogue's data holds.
TEMPLATE = replace(next(e for f in REAL for e in f.sizes if e.name == "gemma3-1b"), source="hub", base=False,
                   older=False, active_params=None, thinking=None, projector=None, drafts=())


def _qwen35() -> Family:
    sizes = []
    for token, params in (("0.8B", 0.8e9), ("2B", 2.0e9), ("4B", 4.0e9), ("9B", 9.0e9)):
        sizes.append(replace(TEMPLATE, name=f"test-qwen3.5-{token.lower()}", label=f"Qwen3.5 {token}",
                             family="test-qwen3.5", family_label="Qwen3.5 (Alibaba)",
                             repo=f"test/Qwen3.5-{token}-GGUF", file=f"Qwen3.5-{token}-Q4_K_M.gguf",
                             file_template=None, quants=("Q4_K_M",), params=int(params), size_bytes=int(params * 0.6),
                             thinking="think_tags",
                             projector=ProjectorFile(f"mmproj-Qwen3.5-{token}-F16.gguf", 200_000_000)))
    return Family("test-qwen3.5", "Qwen3.5 (Alibaba)", "Apache-2.0", tuple(sizes))


def _gpt_oss() -> Family:
    entry = replace(TEMPLATE, name="test-gpt-oss-20b", label="gpt-oss 20B", family="test-gpt-oss",
                    family_label="gpt-oss (OpenAI)", repo="test/gpt-oss-20b-GGUF", file="gpt-oss-20b-mxfp4.gguf",
                    file_template=None, quant="MXFP4", quants=("MXFP4",), params=21_000_000_000,
                    active_params=3_600_000_000, size_bytes=12_100_000_000, thinking="harmony")
    return Family("test-gpt-oss", "gpt-oss (OpenAI)", "Apache-2.0", (entry,))


def _older(family: Family) -> Family:
    return Family(family.id, family.label, family.licence, tuple(replace(e, older=True) for e in family.sizes))


@pytest.fixture(autouse=True)
def today(monkeypatch):
    """SmolLM2 (the starter's family) and Gemma 3 (its built-in size's) as they are, two of today's families
    built here, and one older family; in an order the view must sort: the older one first in the data."""
    kept = {f.id: f for f in REAL if f.id in ("smollm2", "gemma3")}
    old = _older(replace(kept["gemma3"], id="test-old", label="Old family (Nobody)",
                         sizes=tuple(replace(e, name=f"test-old-{e.name}", family="test-old", source="hub",
                                             base=False) for e in kept["gemma3"].sizes)))
    families = (old, _older_if_needed(kept["smollm2"]), _older_if_needed(kept["gemma3"]), _qwen35(), _gpt_oss())
    monkeypatch.setattr(catalogue, "_load", lambda: families)
    monkeypatch.setattr(speed, "memory_bandwidth", lambda force=False: 20e9)
    monkeypatch.setattr(speed, "bandwidth_curve", lambda threads=None, force=False: speed.BandwidthCurve.flat(20e9))
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")


def _older_if_needed(family: Family) -> Family:
    """Today's, here (whatever the catalogue's data says of it)."""
    return Family(family.id, family.label, family.licence, tuple(replace(e, older=False) for e in family.sizes))


@pytest.fixture
def window(qtbot, tmp_path):
    window = open_window(qtbot, tmp_path, FakeEngine())
    window.resize(1400, 900)
    window.show()
    with qtbot.waitSignal(window.bridge.modelLoaded, timeout=10_000):
        window.load_model("test-qwen3.5-4b")
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
    assert list(picker.size_buttons) == ["test-qwen3.5-0.8b", "test-qwen3.5-2b", "test-qwen3.5-4b", "test-qwen3.5-9b"]
    assert [b.text().split("\n")[0].replace(" ↓", "") for b in picker.size_buttons.values()] == \
        ["0.8B", "2B", "4B", "9B"]
    assert picker.family_label.text() == "Qwen3.5"
    assert "Qwen3.5: 0.8B · 2B · 4B · 9B" in picker.family_label.toolTip()
    # The marks are icons (drawn, never a character a font may lack), their words in the tooltip.
    assert picker.marks.isVisible() and not picker.marks.pixmap().isNull()
    assert picker.marks.text() == "" and "thinks before it answers and sees images" in picker.marks.toolTip()
    nine = picker.size_buttons["test-qwen3.5-9b"]
    assert THINKS in nine.accessibleName() and SEES in nine.accessibleName()
    assert "9B parameters" in nine.toolTip()

    with qtbot.waitSignal(window.bridge.modelLoaded, timeout=10_000):
        window.load_model("test-gpt-oss-20b")  # a mixture of experts: total and active parameters
    idle(qtbot, window)
    assert list(picker.size_buttons) == ["test-gpt-oss-20b"]
    assert "21B, 3.6B active parameters" in picker.size_buttons["test-gpt-oss-20b"].toolTip()
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
    smol, gemma = (next(f for f in REAL if f.id == i) for i in ("smollm2", "gemma3"))
    assert tops == [f"{smol.label}   {ladder_text(smol)}", f"{gemma.label}   {ladder_text(gemma)}",
                    "Qwen3.5 (Alibaba)   0.8B · 2B · 4B · 9B", "gpt-oss (OpenAI)   20B",
                    f"Old family (Nobody)   {ladder_text(gemma)}   (older)"]  # the older family last
    oss = dialog.catalogue_items["test-gpt-oss-20b"]
    assert oss.text(CAT_PARAMS) == "21B, 3.6B active" and "mixture of experts" in oss.toolTip(CAT_PARAMS)
    assert oss.text(CAT_CAN) == THINKS and not oss.icon(CAT_CAN).isNull()
    four = dialog.catalogue_items["test-qwen3.5-4b"]
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

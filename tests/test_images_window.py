"""Issue 22 in the window, on the real services and the real runner with a tiny random model that sees: the
attach button, paste and drop; thumbnails in the tray and the message, a larger view on click; several images
per message; the image cost under the reply; the meter counting image tokens; each bad image as one sentence
with nothing saved and the runner still answering; a chat reopened with its images; a model that cannot see."""

import pytest
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent

from assistant.engine import LocalEngine
from tests.support.fake_engine import FakeEngine
from tests.support.tiny_vision import TOKENS_PER_IMAGE, bad_images, png_bytes, write_tiny_vision_model
from tests.support.window import open_window
from ui.image_attachments import ImageViewer
from ui.workers import background_busy

pytestmark = pytest.mark.llama_cpp


@pytest.fixture(scope="module")
def vision_model(tmp_path_factory):
    return write_tiny_vision_model(tmp_path_factory.mktemp("vision"))


@pytest.fixture
def window(qtbot, tmp_path, vision_model):
    made = []

    def make(engine=None, model=None):
        w = open_window(qtbot, tmp_path, engine or LocalEngine())
        w.services.settings.set("defaults", {"max_tokens": 4, "n_threads": 1, "temperature": 0})
        w.defaults = w.services.settings.get("defaults")
        w.resize(1100, 800)
        w.show()
        with qtbot.waitSignal(w.bridge.modelLoaded, timeout=60_000):
            w.load_model(model or str(vision_model[0]))
        made.append(w)
        return w

    yield make
    qtbot.waitUntil(lambda: not background_busy(), timeout=30_000)
    for w in made:
        w.close()
        w.services.close()


def attach(qtbot, w, paths):
    before = len(w.input.tray.images)
    w.input.tray.add_files([str(p) for p in paths])
    qtbot.waitUntil(lambda: w.input.tray.checking == 0, timeout=30_000)
    return len(w.input.tray.images) - before


def send(qtbot, w, text):
    w.input.edit.setPlainText(text)
    with qtbot.waitSignal(w.bridge.turnFinished, timeout=60_000):
        qtbot.keyClick(w.input.edit, Qt.Key_Return)
    qtbot.waitUntil(lambda: not w.generating, timeout=30_000)
    qtbot.waitUntil(lambda: not background_busy(), timeout=30_000)


def test_attach_send_see_thumbnails_the_cost_and_a_larger_view(qtbot, window, tmp_path):
    w = window()
    for i, color in enumerate(((200, 0, 0), (0, 0, 200))):
        (tmp_path / f"{i}.png").write_bytes(png_bytes(48, 32, color))
    assert attach(qtbot, w, [tmp_path / "0.png", tmp_path / "1.png"]) == 2
    tray = w.input.tray
    assert tray.isVisible() and [i.width for i in tray.images] == [48, 48]
    assert [i.name for i in tray.images] == ["0.png", "1.png"]  # as added, whichever check finished first
    assert all(not b.icon().isNull() for b in tray._widgets.values())
    send(qtbot, w, "Compare these.")
    assert not tray.images and not tray.isVisible()
    user, reply = list(w.chat.widgets.values())[-2:]
    assert user.images is not None and len(user.images.buttons) == 2
    assert [b.accessibleName() for b in user.images.buttons] == ["Image 0.png", "Image 1.png"]
    qtbot.waitUntil(lambda: all(not b.icon().isNull() for b in user.images.buttons), timeout=30_000)
    assert reply.stats_label.text().splitlines()[-1].startswith(f"2 images · {2 * TOKENS_PER_IMAGE} tokens · ")
    # A click shows it larger, drawn by the image check.
    user.images.buttons[0].click()
    viewer = next(v for v in w.findChildren(ImageViewer))
    qtbot.waitUntil(lambda: viewer.picture.pixmap() is not None and not viewer.picture.pixmap().isNull(),
                    timeout=30_000)
    assert "48 × 32 pixels" in viewer.caption.text()
    viewer.close()
    # Reopened, the chat shows its images again.
    conv_id = w.current_id
    w.new_chat()
    w.open_conversation(conv_id)
    reopened = next(x for x in w.chat.widgets.values() if x.role == "user")
    assert len(reopened.images.buttons) == 2
    qtbot.waitUntil(lambda: all(not b.icon().isNull() for b in reopened.images.buttons), timeout=30_000)


def test_paste_and_drop_attach_images(qtbot, window, tmp_path):
    w = window()
    pasted = QMimeData()
    pasted.setData("image/png", png_bytes(20, 20, (0, 200, 0)))
    assert w.input.edit.canInsertFromMimeData(pasted)
    w.input.edit.insertFromMimeData(pasted)
    qtbot.waitUntil(lambda: len(w.input.tray.images) == 1, timeout=30_000)
    assert w.input.edit.toPlainText() == ""  # the picture went to the tray, not into the text
    (tmp_path / "dropped.png").write_bytes(png_bytes(22, 22, (0, 0, 200)))
    dropped = QMimeData()
    dropped.setUrls([QUrl.fromLocalFile(str(tmp_path / "dropped.png"))])
    event = QDropEvent(QPointF(10, 10), Qt.CopyAction, dropped, Qt.LeftButton, Qt.NoModifier)
    w.input.dropEvent(event)
    qtbot.waitUntil(lambda: len(w.input.tray.images) == 2, timeout=30_000)
    assert [i.name for i in w.input.tray.images] == ["pasted.png", "dropped.png"]
    w.input.tray.remove(w.input.tray.images[0].sha256)
    assert [i.name for i in w.input.tray.images] == ["dropped.png"]


def test_the_meter_counts_image_tokens_before_sending(qtbot, window, tmp_path):
    w = window()
    counts = []
    w.bridge.tokenCount.connect(lambda used, limit: counts.append(used))
    w.input.edit.setPlainText("What is this?")
    without = w.services.chat.run_on_engine(
        lambda engine: engine.count_tokens([{"role": "user", "content": "What is this?"}])).result(30)
    qtbot.waitUntil(lambda: bool(counts) and counts[-1] == without, timeout=30_000)
    (tmp_path / "a.png").write_bytes(png_bytes())
    attach(qtbot, w, [tmp_path / "a.png"])
    qtbot.waitUntil(lambda: counts[-1] > without, timeout=30_000)
    assert counts[-1] - without > TOKENS_PER_IMAGE
    assert f"{counts[-1]:,} / " in w.input.context_label.text()


def test_each_bad_image_is_one_sentence_nothing_is_attached_or_saved_and_the_runner_answers(qtbot, window, tmp_path):
    w = window()
    for kind, (data, word) in sorted(bad_images().items()):
        path = tmp_path / f"{kind}.png"
        path.write_bytes(data)
        assert attach(qtbot, w, [path]) == 0
        sentence = w.input.tray.problem.text()
        assert w.input.tray.problem.isVisible() and word in sentence and f"'{kind}.png'" in sentence
        assert sentence.endswith(".") and "\n" not in sentence
    assert w.history.count_conversations() == 0
    (tmp_path / "good.png").write_bytes(png_bytes())
    attach(qtbot, w, [tmp_path / "good.png"])
    send(qtbot, w, "And this one?")
    reply = list(w.chat.widgets.values())[-1]
    assert "1 image" in reply.stats_label.text() and not w.input.tray.problem.isVisible()


def test_a_model_that_cannot_see_says_so_and_keeps_the_message(qtbot, window, tmp_path):
    w = window(FakeEngine(), "llama-3.2-1b")
    (tmp_path / "a.png").write_bytes(png_bytes())
    attach(qtbot, w, [tmp_path / "a.png"])
    w.input.edit.setPlainText("What is this?")
    qtbot.keyClick(w.input.edit, Qt.Key_Return)
    assert "cannot see images" in w.input.tray.problem.text()
    assert w.input.edit.toPlainText() == "What is this?" and len(w.input.tray.images) == 1
    assert w.history.count_conversations() == 0 and not w.generating


def test_completion_mode_keeps_attached_images_instead_of_dropping_them(qtbot, window, tmp_path):
    """A base model in text completion takes text only: the images stay in the tray, with a sentence."""
    w = window()
    (tmp_path / "a.png").write_bytes(png_bytes())
    attach(qtbot, w, [tmp_path / "a.png"])
    w.base_notice.show()  # as for a base model: text completion on
    w.base_notice.completion.setChecked(True)
    assert w.base_notice.completion_mode
    w.input.edit.setPlainText("Once upon a time")
    qtbot.keyClick(w.input.edit, Qt.Key_Return)
    assert "Completion mode continues text only" in w.input.tray.problem.text()
    assert w.input.edit.toPlainText() == "Once upon a time" and len(w.input.tray.images) == 1
    assert w.history.count_conversations() == 0 and not w.generating


def test_deleting_the_conversation_deletes_its_images(qtbot, window, tmp_path):
    w = window()
    (tmp_path / "a.png").write_bytes(png_bytes())
    attach(qtbot, w, [tmp_path / "a.png"])
    send(qtbot, w, "Look.")
    folder = w.history.image_files.folder
    assert [p for p in folder.rglob("*.png")]
    w.sidebar.delete(w.current_id, confirm=False)
    assert not [p for p in folder.rglob("*.png")]


def test_the_picker_and_the_manager_mark_models_that_see(qtbot, window, vision_model, monkeypatch):
    from models import library, speed
    from models.library import SEES_IMAGES_LABEL

    monkeypatch.setattr(speed, "memory_bandwidth", lambda force=False: 20e9)  # no bandwidth probe
    monkeypatch.setattr(speed, "bandwidth_curve", lambda threads=None, force=False: speed.BandwidthCurve.flat(20e9))
    library.import_file(vision_model[0], "seeing")
    w = window(FakeEngine(), "llama-3.2-1b")
    w.services.library.refresh_installed()
    w.model_picker.refresh_installed()
    qtbot.waitUntil(lambda: w.model_picker.combo.findData("seeing") >= 0, timeout=30_000)
    qtbot.waitUntil(lambda: not background_busy(), timeout=30_000)
    combo = w.model_picker.combo
    assert SEES_IMAGES_LABEL in combo.itemText(combo.findData("seeing"))
    assert SEES_IMAGES_LABEL not in combo.itemText(combo.findData("starter"))
    dialog = w.make_model_manager()
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitUntil(lambda: not background_busy(), timeout=30_000)
    items = {dialog.installed.topLevelItem(i).data(0, Qt.UserRole): dialog.installed.topLevelItem(i)
             for i in range(dialog.installed.topLevelItemCount())}
    assert SEES_IMAGES_LABEL in items["seeing"].text(7) and SEES_IMAGES_LABEL not in items["starter"].text(7)
    dialog.close()


def test_export_from_the_window_embeds_images_or_puts_them_beside_the_file(qtbot, window, tmp_path, monkeypatch):
    import json

    w = window()
    (tmp_path / "a.png").write_bytes(png_bytes())
    attach(qtbot, w, [tmp_path / "a.png"])
    send(qtbot, w, "Look.")
    out = tmp_path / "out"
    out.mkdir()
    for name, chosen in (("inside.json", "JSON, images inside it (*.json)"),
                         ("beside.json", "JSON, images as files beside it (*.json)")):
        monkeypatch.setattr("ui.sidebar.QFileDialog.getSaveFileName",
                            lambda parent, caption, path, filters, name=name, chosen=chosen: (str(out / name), chosen))
        assert w.sidebar.export(w.current_id, "json") == str(out / name)
    inside = json.loads((out / "inside.json").read_text())["conversations"][0]["messages"][0]["images"][0]
    beside = json.loads((out / "beside.json").read_text())["conversations"][0]["messages"][0]["images"][0]
    assert "data" in inside and (out / beside["file"]).is_file()
    assert "its images in beside-images" in w.statusBar().currentMessage()
    assert w.sidebar.export(w.current_id, "md", str(out / "chat.md")) == str(out / "chat.md")
    assert "](chat-images/" in (out / "chat.md").read_text()

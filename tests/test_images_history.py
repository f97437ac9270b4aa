"""Issue 22: images in the history. Content-addressed files written once, linked from messages, read back when
a chat reopens, exported (JSON embedded or beside it, Markdown beside it), imported within limits, and
deleted with the last conversation that shows them."""

import base64
import json
from dataclasses import replace
from pathlib import Path

import pytest

from assistant.history import HistoryStore, ImportFormatError, ImportLimitError, ImportLimits
from assistant.history.image_export import write_export
from assistant.images import attachment
from assistant.session import ChatSession
from tests.support.fake_engine import FakeEngine
from tests.support.tiny_vision import jpeg_bytes, png_bytes


@pytest.fixture
def store(tmp_path):
    with HistoryStore.open(tmp_path / "data" / "history.db") as s:
        yield s


def image_files(store) -> list[str]:
    return sorted(p.name for p in store.image_files.folder.rglob("*") if p.is_file() and not p.name.startswith("."))


RED, BLUE = attachment(png_bytes(48, 32), "red.png"), attachment(jpeg_bytes(40, 30), "blue.jpg")


def test_an_image_is_one_file_however_many_messages_show_it(store):
    conv = store.create_conversation()
    m = store.add_message(conv.id, "user", "look", images=[RED, BLUE])
    assert [r.name for r in m.images] == ["red.png", "blue.jpg"] and m.images[0].size_bytes == len(RED.data)
    other = store.create_conversation()
    store.add_message(other.id, "user", "again", images=[RED])
    assert image_files(store) == sorted([f"{RED.sha256}.png", f"{BLUE.sha256}.jpg"])
    path = store.image_files.path_for(RED.sha256, RED.mime)
    assert path.read_bytes() == RED.data and path.parent.name == RED.sha256[:2]
    shown = store.get_conversation(conv.id).messages[0]
    assert [r.sha256 for r in shown.images] == [RED.sha256, BLUE.sha256]
    assert store.image_data(shown.images[1]) == BLUE.data


def test_an_edited_message_keeps_its_images(store):
    conv = store.create_conversation()
    m = store.add_message(conv.id, "user", "look", images=[RED])
    edited = store.edit(m.id, "look closer")
    assert [r.sha256 for r in edited.images] == [RED.sha256]
    assert [len(x.images) for x in store.get_conversation(conv.id).messages] == [1, 1]


def test_deleting_the_last_conversation_that_shows_an_image_deletes_the_image(store):
    a, b = store.create_conversation(), store.create_conversation()
    store.add_message(a.id, "user", "both", images=[RED, BLUE])
    store.add_message(b.id, "user", "one", images=[RED])
    store.delete(a.id)
    assert image_files(store) == [f"{RED.sha256}.png"]  # still shown in b
    assert store.get_conversation(b.id).messages[0].images[0].sha256 == RED.sha256
    store.delete(b.id)
    assert image_files(store) == []
    assert store.conn.execute("SELECT count(*) FROM images").fetchone()[0] == 0


def test_a_chat_reopens_with_its_images_for_the_model(store):
    engine = FakeEngine(token_delay=0)
    engine.load("seeing")
    engine._summary.vision = True
    session = ChatSession(engine, history=store)
    list(session.send("What is this?", [replace(RED, width=48, height=32)]))
    reopened = ChatSession(engine, history=store)
    reopened.resume(session.conversation_id)
    first = reopened.messages[0]
    assert first["images"][0].data == RED.data and first["images"][0].name == "red.png"
    assert (first["images"][0].width, first["images"][0].height) == (48, 32)


def test_a_message_whose_image_cannot_be_saved_is_not_saved_at_all(store, monkeypatch):
    conv = store.create_conversation()

    def full(image):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store.image_files, "ensure", full)
    from assistant.history import HistoryDiskFullError

    with pytest.raises(HistoryDiskFullError, match="was not saved"):
        store.add_message(conv.id, "user", "look", images=[RED])
    assert store.get_conversation(conv.id).messages == []


def test_json_export_embeds_images_or_puts_them_beside_it_and_both_import_back(store, tmp_path):
    conv = store.create_conversation()
    store.add_message(conv.id, "user", "look", images=[RED, BLUE])
    store.add_message(conv.id, "assistant", "A red and a blue picture.",
                      stats={"images": {"count": 2, "tokens": 32, "encode_ms": 900.0, "encoded": 2, "reused": 0}})
    out = tmp_path / "out"
    out.mkdir()
    embedded = write_export(store, out / "chat.json", "json", [conv.id], images="embed")
    assert embedded.images == 0
    doc = json.loads((out / "chat.json").read_text())
    item = doc["conversations"][0]["messages"][0]["images"][0]
    assert base64.b64decode(item["data"]) == RED.data and item["name"] == "red.png"

    beside = write_export(store, out / "files.json", "json", [conv.id], images="files")
    assert beside.images == 2 and beside.images_folder == out / "files-images"
    doc = json.loads((out / "files.json").read_text())
    item = doc["conversations"][0]["messages"][0]["images"][0]
    assert "data" not in item and item["file"] == f"files-images/{RED.sha256}.png"
    assert (out / item["file"]).read_bytes() == RED.data

    for name, folder in (("chat.json", None), ("files.json", out)):
        with HistoryStore.open(tmp_path / name / "history.db") as other:
            result = other.import_json((out / name).read_bytes(), folder=folder)
            messages = other.get_conversation(result.imported[0]).messages
            assert [r.sha256 for r in messages[0].images] == [RED.sha256, BLUE.sha256]
            assert other.image_data(messages[0].images[1]) == BLUE.data
            assert messages[1].stats["images"]["tokens"] == 32


def test_markdown_export_links_image_files_beside_it(store, tmp_path):
    conv = store.create_conversation()
    store.add_message(conv.id, "user", "look", images=[RED])
    store.add_message(conv.id, "assistant", "Red.", stats={"images": {"count": 1, "tokens": 16, "encode_ms": 40.0,
                                                                      "encoded": 1}})
    written = write_export(store, tmp_path / "chat.md", "md", [conv.id])
    text = (tmp_path / "chat.md").read_text()
    assert f"![red.png](chat-images/{RED.sha256}.png)" in text
    assert (tmp_path / "chat-images" / f"{RED.sha256}.png").read_bytes() == RED.data and written.images == 1
    assert "*1 image · 16 tokens · 40 ms to encode*" in text
    # Without files to link (shown on a terminal), an image is named, not linked.
    assert "*[image: red.png]*" in store.export_markdown([conv.id])


def _doc_with_image(item: dict) -> dict:
    return {"format": "hearthchat-history", "version": 3, "conversations": [
        {"id": "c1", "created_at": "2026-01-01T00:00:00+00:00", "messages": [
            {"id": "m1", "role": "user", "content": "look", "status": "complete",
             "created_at": "2026-01-01T00:00:00+00:00", "images": [item]}]}]}


def _embedded(image, **extra) -> dict:
    return {"sha256": image.sha256, "mime": image.mime, "name": image.name,
            "data": base64.b64encode(image.data).decode(), **extra}


@pytest.mark.parametrize("case, item, error, words", [
    ("wrong hash", lambda: {**_embedded(RED), "sha256": BLUE.sha256}, ImportFormatError, "do not have the SHA-256"),
    ("not a picture", lambda: {**_embedded(attachment(png_bytes())), "data": base64.b64encode(b"hello").decode(),
                               "sha256": __import__("hashlib").sha256(b"hello").hexdigest()},
     ImportFormatError, "not a picture"),
    ("bad base64", lambda: {**_embedded(RED), "data": "@@@"}, ImportFormatError, "not valid base64"),
    ("no data", lambda: {"sha256": RED.sha256, "mime": "image/png"}, ImportFormatError, "neither its data"),
    ("escaping path", lambda: {"sha256": RED.sha256, "file": "../secret.png"}, ImportFormatError, "not a plain path"),
    ("absolute path", lambda: {"sha256": RED.sha256, "file": "/etc/passwd"}, ImportFormatError, "not a plain path"),
    ("missing file", lambda: {"sha256": RED.sha256, "file": "x-images/none.png"}, ImportFormatError,
     "not beside the export"),
])
def test_an_import_with_a_bad_image_changes_nothing_and_says_what_is_wrong(store, tmp_path, case, item, error, words):
    with pytest.raises(error, match=words) as caught:
        store.import_json(json.dumps(_doc_with_image(item())), folder=tmp_path)
    assert str(caught.value).endswith("Nothing was changed.")
    assert store.count_conversations() == 0 and image_files(store) == []


def test_a_symlink_out_of_the_export_folder_is_not_followed(store, tmp_path):
    (tmp_path / "outside.png").write_bytes(RED.data)
    (tmp_path / "export").mkdir()
    (tmp_path / "export" / "link.png").symlink_to(tmp_path / "outside.png")
    with pytest.raises(ImportFormatError, match="leads outside"):
        store.import_json(json.dumps(_doc_with_image({"sha256": RED.sha256, "file": "link.png"})),
                          folder=tmp_path / "export")


def test_import_limits_count_and_size_images(store, tmp_path):
    doc = _doc_with_image(_embedded(RED))
    with pytest.raises(ImportLimitError, match="the image limit"):
        store.import_json(json.dumps(doc), ImportLimits(max_images=0))
    with pytest.raises(ImportLimitError, match="the image size limit"):
        store.import_json(json.dumps(doc), ImportLimits(max_image_bytes=10))
    with pytest.raises(ImportLimitError, match="the image size limit"):
        store.import_json(json.dumps(doc), ImportLimits(max_image_total_bytes=10))
    assert store.count_conversations() == 0 and image_files(store) == []
    assert store.import_json(json.dumps(doc)).imported


def test_an_older_history_file_gains_the_image_tables(tmp_path):
    from sqlite_utils import Database

    from assistant.history import schema

    path = tmp_path / "old.db"
    db = Database(path)
    older = schema.Migrations(schema.MIGRATIONS.name)
    for m in schema.MIGRATIONS._migrations:
        if m.name != "m008_images":
            older(name=m.name)(m.fn)
    older.apply(db)
    db.conn.close()
    with HistoryStore.open(path) as store:
        assert "m008_images" in store.migrated
        conv = store.create_conversation()
        assert store.add_message(conv.id, "user", "look", images=[RED]).images


def test_the_files_live_in_the_data_directory_beside_the_history(store):
    assert store.image_files.folder == Path(store.path).parent / "images"


def test_no_file_is_left_behind_by_a_message_that_was_not_saved_or_an_import_that_skipped(store, tmp_path):
    from assistant.history import ConversationNotFound

    with pytest.raises(ConversationNotFound):
        store.add_message(999, "user", "look", images=[RED])
    assert image_files(store) == []
    conv = store.create_conversation()
    store.add_message(conv.id, "user", "look", images=[RED])
    out = tmp_path / "x.json"
    write_export(store, out, "json")
    store.delete(conv.id)
    with HistoryStore.open(tmp_path / "other" / "history.db") as other:
        assert other.import_json(out.read_bytes()).imported
        assert other.import_json(out.read_bytes()).skipped  # the second time: already there, nothing new
        assert image_files(other) == [f"{RED.sha256}.png"]

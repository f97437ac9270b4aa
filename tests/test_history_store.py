"""The store's API: conversations, titles, the message tree, streaming saves, stats."""

import threading
import time

import pytest

from common.errors import UserError
from assistant.history import ConversationNotFound, HistoryStore, MessageNotFound
from assistant.stats_format import format_stats_line

STATS = {
    "reply": "Hi!",
    "model": {"name": "gemma-3-270m", "file": "gemma-3-270m-Q4_K_M.gguf", "quant": "Q4_K_M",
              "size_bytes": 253_000_000, "n_params": 268_000_000},
    "prompt_tokens": 20, "cached_tokens": 0, "prompt_ms": 90.5, "prompt_tps": 221.0, "ttft_ms": 210.0,
    "completion_tokens": 312, "gen_ms": 7572.8, "gen_tps": 41.2, "total_ms": 7700.0, "stop_reason": "stop",
    "n_ctx": 4096, "n_threads": 2,
    "memory": {"weights_bytes": 253_000_000, "kv_bytes": 50_000_000, "compute_bytes": 10_000_000,
               "rss_bytes": 1_200_000_000, "rss_peak_bytes": 1_300_000_000, "vram_bytes": 0},
    "backend": {"name": "cpu"},
}


@pytest.fixture
def store(tmp_path):
    with HistoryStore.open(tmp_path / "history.db") as s:
        yield s


def test_conversation_saved_with_everything(store):
    conv = store.create_conversation(model="gemma-3-270m", system_prompt="Be brief.", settings={"temperature": 0.7})
    store.add_message(conv.id, "user", "Hello there")
    reply = store.add_message(conv.id, "assistant", "Hi!", stats=STATS)
    got = store.get_conversation(conv.id)
    assert (got.model, got.system_prompt, got.settings) == ("gemma-3-270m", "Be brief.", {"temperature": 0.7})
    assert [(m.role, m.content, m.status) for m in got.thread] == [
        ("user", "Hello there", "complete"), ("assistant", "Hi!", "complete")]
    assert got.thread[1].stats == STATS and reply.stats == STATS
    assert got.chat_messages() == [{"role": "system", "content": "Be brief."},
                                   {"role": "user", "content": "Hello there"},
                                   {"role": "assistant", "content": "Hi!"}]
    # The queryable columns for the speed chart.
    [row] = store.speed_history("gemma-3-270m")
    assert (row["gen_tps"], row["prompt_tps"], row["ttft_ms"], row["completion_tokens"], row["quant"]) == (
        41.2, 221.0, 210.0, 312, "Q4_K_M")


def test_title_from_first_message_and_rename(store):
    conv = store.create_conversation()
    assert store.get_conversation(conv.id).display_title == "New conversation"
    store.add_message(conv.id, "user",
                      "  How do   I bake\nsourdough bread at home without a proper oven, using only a pot?")
    store.add_message(conv.id, "user", "Second message")
    title = store.get_conversation(conv.id).title
    assert title.startswith("How do I bake sourdough bread") and title.endswith("…") and len(title) <= 61
    store.rename(conv.id, "Bread")
    assert store.list_conversations()[0].title == "Bread"
    with pytest.raises(UserError):
        store.rename(conv.id, "   ")
    with pytest.raises(ConversationNotFound):
        store.rename(999, "x")


def test_list_most_recent_first(store):
    ids = [store.create_conversation(title=f"c{i}").id for i in range(5)]
    store.add_message(ids[1], "user", "bump")  # activity moves it to the top
    listed = store.list_conversations(limit=3)
    assert [c.id for c in listed] == [ids[1], ids[4], ids[3]]
    assert listed[0].message_count == 1
    assert [c.id for c in store.list_conversations(limit=3, offset=3)] == [ids[2], ids[0]]
    assert store.count_conversations() == 5


def test_regenerate_and_edit_keep_every_version(store):
    conv = store.create_conversation()
    q = store.add_message(conv.id, "user", "Question")
    a1 = store.add_message(conv.id, "assistant", "Answer one")
    with store.regenerate(a1.id) as r:
        r.append("Answer two")
    a2 = r.message
    assert [m.id for m in store.siblings(a1.id)] == [a1.id, a2.id]
    assert [m.content for m in store.get_conversation(conv.id).thread] == ["Question", "Answer two"]

    # Edit the question: a sibling question; the old one and its replies stay.
    q2 = store.edit(q.id, "Better question")
    a3 = store.add_message(conv.id, "assistant", "Answer three")
    assert [m.content for m in store.branch_path(a3.id)] == ["Better question", "Answer three"]
    assert [m.id for m in store.siblings(q.id)] == [q.id, q2.id]
    conv_now = store.get_conversation(conv.id)
    assert len(conv_now.messages) == 5 and conv_now.branch_count() == 3

    # The arrows: back to the first question shows its newest reply.
    thread = store.switch_branch(q.id)
    assert [m.content for m in thread] == ["Question", "Answer two"]
    assert store.get_conversation(conv.id).current_leaf_id == a2.id
    with pytest.raises(UserError):
        store.regenerate(q.id)  # only replies are regenerated


def test_explicit_parent_must_belong_to_the_conversation(store):
    a, b = store.create_conversation(), store.create_conversation()
    m = store.add_message(a.id, "user", "in a")
    with pytest.raises(MessageNotFound):
        store.add_message(b.id, "user", "in b", parent_id=m.id)
    with pytest.raises(ValueError):
        store.add_message(a.id, "robot", "x")
    with pytest.raises(ValueError):
        store.add_message(a.id, "user", "x", status="done")


def test_streaming_reply_saves_as_it_grows(store):
    conv = store.create_conversation()
    store.add_message(conv.id, "user", "Count")
    reply = store.start_reply(conv.id, save_interval=0.5)
    assert store.get_message(reply.id).status == "streaming"
    reply.append("one ")
    assert store.get_message(reply.id).content == ""  # not yet: at most one save per interval
    time.sleep(0.55)
    reply.append("two ")
    saved = store.get_message(reply.id)
    assert (saved.content, saved.status) == ("one two ", "streaming")
    done = reply.finish("complete", stats=STATS)
    assert (done.content, done.status, done.stats) == ("one two ", "complete", STATS)
    with pytest.raises(RuntimeError):
        reply.append("more")


def test_streaming_reply_context_manager_statuses(store):
    conv = store.create_conversation()
    with pytest.raises(ZeroDivisionError):
        with store.start_reply(conv.id) as r:
            r.append("partial")
            1 / 0
    failed = store.get_message(r.id)
    assert (failed.status, failed.content) == ("error", "partial") and "division" in failed.error
    with pytest.raises(KeyboardInterrupt):
        with store.start_reply(conv.id) as r:
            r.append("cut")
            raise KeyboardInterrupt
    assert store.get_message(r.id).status == "stopped"
    r = store.start_reply(conv.id)
    r.append("halfway")
    assert r.stop().status == "stopped"


def test_live_stream_in_this_process_is_not_marked_interrupted(tmp_path):
    path = tmp_path / "h.db"
    with HistoryStore.open(path) as writer:
        conv = writer.create_conversation()
        reply = writer.start_reply(conv.id)
        reply.append("live")
        reply.flush()
        with HistoryStore.open(path) as other:  # e.g. the window opening beside the chat
            assert other.interrupted == []
            assert other.get_message(reply.id).status == "streaming"
        reply.finish()


def test_delete_removes_everything_including_search(store):
    keep = store.create_conversation(title="keep")
    store.add_message(keep.id, "user", "zebra keep")
    gone = store.create_conversation(title="zebra title")
    store.add_message(gone.id, "user", "zebra crossing")
    store.add_message(gone.id, "assistant", "zebra stripes", stats=STATS)
    assert {h.conversation_id for h in store.search("zebra")} == {keep.id, gone.id}
    assert store.delete(gone.id) == 2
    assert {h.conversation_id for h in store.search("zebra")} == {keep.id}
    assert store.speed_history() == []
    with pytest.raises(ConversationNotFound):
        store.get_conversation(gone.id)
    with pytest.raises(ConversationNotFound):
        store.delete(gone.id)
    assert store.integrity_check() == "ok"


def test_reply_to_a_conversation_deleted_meanwhile_does_not_fail(store):
    conv = store.create_conversation()
    reply = store.start_reply(conv.id)
    reply.append("text")
    store.delete(conv.id)  # the window deletes it while the CLI still streams
    reply.flush()
    assert reply.finish(stats=STATS).status == "complete"


def test_threads_share_one_store(store):
    conv = store.create_conversation()
    errors = []

    def work(n):
        try:
            for i in range(30):
                store.add_message(conv.id, "user", f"t{n} {i}", parent_id=None)
                store.list_conversations()
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(store.get_conversation(conv.id).messages) == 120


def test_stats_line_format():
    assert format_stats_line(STATS) == (
        "41.2 tok/s · 312 tokens · 0.21 s to first token · 1.2 GB RAM · gemma-3-270m Q4_K_M")
    assert format_stats_line({"gen_tps": float("nan"), "stop_reason": "length", "model": "x"}) == "x · max tokens reached"
    assert format_stats_line(None) == "" and format_stats_line({}) == ""


def test_a_failed_save_mid_reply_does_not_stop_it_and_finish_reports(tmp_path):
    import sqlite3

    from assistant.history import HistoryBusyError

    path = tmp_path / "history.db"
    with HistoryStore.open(path, busy_timeout=0.2) as store:
        conv = store.create_conversation()
        reply = store.start_reply(conv.id, save_interval=0)
        reply.append("saved part. ")
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # another process holding the write lock
        reply.append("not saved yet. ")  # the save fails; the reply goes on
        assert isinstance(reply.save_error, HistoryBusyError)
        assert store.get_message(reply.id).content == "saved part. "
        with pytest.raises(HistoryBusyError, match="busy"):
            reply.finish()
        assert not reply.finished and store.get_message(reply.id).status == "streaming"
        blocker.execute("ROLLBACK")
        blocker.close()
        reply.append("then saved.")
        assert reply.save_error is None
        done = reply.finish()
        assert (done.status, done.content) == ("complete", "saved part. not saved yet. then saved.")

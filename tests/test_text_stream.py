"""Streaming text out of token bytes: UTF-8 split across tokens, and stop strings."""

from hypothesis import given
from hypothesis import strategies as st

from assistant.engine.runner.text_stream import TextStream


def _chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:])]


@given(st.text(), st.lists(st.integers(min_value=0, max_value=10_000), max_size=30))
def test_any_text_split_anywhere_comes_out_whole_and_never_garbled(text, cuts):
    stream = TextStream()
    out = [stream.feed(chunk) for chunk in _chunks(text.encode("utf-8"), cuts)]
    out.append(stream.flush())
    assert "".join(out) == text
    for piece in out:
        assert "\ufffd" not in piece or "\ufffd" in text


def test_a_character_split_across_tokens_appears_once_complete():
    stream = TextStream()
    emoji = "🙂".encode("utf-8")
    assert [stream.feed(emoji[:1]), stream.feed(emoji[1:3]), stream.feed(emoji[3:])] == ["", "", "🙂"]


def test_stop_string_across_pieces_is_cut_and_nothing_else_is_delayed():
    stream = TextStream(["<end_of_turn>"])
    assert stream.feed(b"Hello") == "Hello"
    assert stream.feed(b" <end") == " "  # "<end" might be the stop string: held back
    assert stream.feed(b"_of_turn>more") == ""
    assert stream.stopped and stream.flush() == ""


def test_held_back_text_is_released_when_it_is_not_a_stop_string():
    stream = TextStream(["<end_of_turn>"])
    assert stream.feed(b"a <en") == "a "
    assert stream.feed(b"joy") == "<enjoy"


def test_real_tokenizer_splits_characters_across_byte_tokens(tiny_model_path):
    """The tiny model's byte-fallback tokens cut an emoji into 4 pieces; streaming rejoins it."""
    from assistant.engine.runner.llama_model import LoadedModel

    llama = LoadedModel(str(tiny_model_path), n_ctx=64, n_threads=1, n_gpu_layers=0, n_batch=64)
    text = "naïve 🙂 שלום"
    tokens = llama.tokenize(text, add_bos=False)
    pieces = [llama.piece(t) for t in tokens]
    assert any(len(p) and (p[0] & 0xC0) == 0x80 for p in pieces)  # some piece starts mid-character
    stream = TextStream()
    shown = [stream.feed(p) for p in pieces] + [stream.flush()]
    assert "".join(shown).strip() == text and all("\ufffd" not in s for s in shown)
    llama.close()


def test_a_character_cut_by_the_end_of_the_reply_is_dropped_not_shown_as_a_replacement():
    """A reply stopped at max tokens between the bytes of an emoji ends before it, not with U+FFFD."""
    emoji = "🙂".encode()
    stream = TextStream()
    shown = stream.feed(b"Hi ") + stream.feed(emoji[:2]) + stream.flush()
    assert shown == "Hi " and "\ufffd" not in shown
    # A broken byte in the middle of a reply still shows as U+FFFD: that text really is invalid.
    stream = TextStream()
    middle = stream.feed(b"a\xffb") + stream.flush()
    assert middle == "a\ufffdb"

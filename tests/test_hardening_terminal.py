"""Issue 20, the terminal: whatever bytes or text arrive, in whatever pieces, only printable text, newlines,
tabs and the app's own styling reach the terminal."""

from __future__ import annotations

import io
import unicodedata

from hypothesis import given, settings
from hypothesis import strategies as st

from common import terminal
from common.terminal import TerminalStream, is_inert, json_text, safe_text, style_marks


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


NASTY = [b"\x1b", b"[2J", b"\x1b]0;title\x07", b"\x1b[?1049h", b"\x9b", b"\xc2\x9b", b"\xe2\x80\xae",
         b"\xe2\x80\xa8", b"\r", b"\n", b"\t", b"\x00", b"\x7f", "é".encode(), "日本".encode(), "😀".encode(),
         b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf0\x9f", b"plain text "]


def _reaches_terminal_ok(out: str) -> bool:
    """Nothing a terminal acts on: no C0 but newline and tab, no DEL, no C1, no format or separator characters
    (bidi overrides among them); the joiners emoji need are the only format characters left."""
    for ch in out:
        if ch in "\n\t":
            continue
        cat = unicodedata.category(ch)
        if cat in ("Cc", "Cs", "Zl", "Zp"):
            return False
        if cat == "Cf" and ch not in "\u200c\u200d" and not "\U000e0020" <= ch <= "\U000e007f":
            return False
    return True


def _split(data, cuts: list[int]):
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for p in points + [len(data)]:
        pieces.append(data[last:p])
        last = p
    return pieces


byte_soup = st.lists(st.one_of(st.sampled_from(NASTY), st.binary(max_size=12)), max_size=40).map(b"".join)


@settings(max_examples=400, deadline=None)
@given(byte_soup, st.lists(st.integers(min_value=0, max_value=10_000), max_size=30))
def test_any_bytes_in_any_pieces_reach_the_terminal_inert(data, cuts):
    tty = FakeTty()
    stream = TerminalStream(tty)
    for piece in _split(data, cuts):
        stream.buffer.write(piece)
    stream.buffer.finish()
    stream.finish()
    out = tty.getvalue()
    assert _reaches_terminal_ok(out) and is_inert(out), repr(out)
    assert "\x1b" not in out


@settings(max_examples=400, deadline=None)
@given(byte_soup, st.lists(st.integers(min_value=0, max_value=10_000), max_size=30))
def test_any_text_in_any_pieces_reaches_the_terminal_inert(data, cuts):
    text = data.decode("utf-8", errors="surrogateescape")  # lone surrogates too
    tty = FakeTty()
    stream = TerminalStream(tty)
    for piece in _split(text, cuts):
        stream.write(piece)
    stream.finish()
    out = tty.getvalue()
    assert _reaches_terminal_ok(out) and "\x1b" not in out, repr(out)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cf", "Cs", "Zl", "Zp")), max_size=200),
       st.lists(st.integers(min_value=0, max_value=1000), max_size=10))
def test_printable_text_is_kept_exactly_and_multibyte_characters_stay_whole(text, cuts):
    tty = FakeTty()
    stream = TerminalStream(tty)
    encoded = text.encode("utf-8")
    for piece in _split(encoded, cuts):  # cuts land inside multi-byte characters
        stream.buffer.write(piece)
    stream.buffer.finish()
    stream.finish()
    assert tty.getvalue() == text


def test_an_escape_split_across_pieces_does_not_act():
    tty = FakeTty()
    stream = TerminalStream(tty)
    stream.write("before \x1b")
    stream.write("[2J after")
    stream.buffer.write(b"\xe2\x80")  # half a U+202E
    stream.buffer.write(b"\xaeevil")
    stream.finish()
    assert tty.getvalue() == "before \\e[2J after\\u202eevil"


def test_crlf_becomes_a_newline_even_across_pieces_and_a_lone_cr_is_shown():
    tty = FakeTty()
    stream = TerminalStream(tty)
    stream.write("one\r")
    stream.write("\ntwo\rthree\r")
    stream.finish()
    assert tty.getvalue() == "one\ntwo\\rthree\\r"


def test_only_the_apps_own_marks_become_styles():
    tty = FakeTty()
    stream = TerminalStream(tty)
    on, off = style_marks("bold", stream)
    forged = "\ue000" + "0" * 16 + "1"  # the right shape, the wrong secret
    stream.write(f"{on}bold{off} {forged}x")
    assert tty.getvalue() == f"\x1b[1mbold\x1b[0m {forged}x"
    plain = io.StringIO()  # not a terminal: no styling at all
    assert style_marks("bold", TerminalStream(plain)) is None


def test_install_wraps_and_restores_the_standard_streams(capsys):
    import sys

    before = sys.stdout
    with terminal.install():
        assert isinstance(sys.stdout, TerminalStream)
        print("a\x1b[2Jb\u202ec")
    assert sys.stdout is before
    assert capsys.readouterr().out == "a\\e[2Jb\\u202ec\n"


def test_safe_text_keeps_scripts_emoji_and_flags():
    flag = "\U0001f3f4\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f"  # Scotland
    family = "👩\u200d👩\u200d👧"
    text = f"مرحبا שלום 日本語 {family} {flag} non\u00a0breaking"
    assert safe_text(text) == text and safe_text(text, keep_newlines=True) == text
    assert safe_text("a\u2028b\u00adc\ufeffd") == "a\\u2028b\\xadc\\ufeffd"


def test_json_for_the_terminal_is_the_same_json_and_inert():
    import json

    value = {"reply": "x\x1b[2J\u202e\x9b\ud800 ok", "n": 1}
    text = json_text(value)
    assert json.loads(text) == value and is_inert(text) and "\x1b" not in text

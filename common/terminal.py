"""Where text meets a terminal: what users, models, remote servers, files or clients wrote, made inert.

A conversation title, a model's reply, a remote server's stream or a file name may hold
escape sequences (ESC [ 2 J clears the screen, OSC 0 sets the window title, U+202E turns
the rest of a line around). Printed raw, they act; escaped, they read as what they are.

Two ways in, one rule:

- `safe_text(text)` escapes one string (for a window label, a log line, a table cell);
- `TerminalStream` wraps `sys.stdout`/`sys.stderr` for the whole command line
  (`install()`): everything printed passes through the same escaping, streamed text
  included, piece by piece. Bytes written to its `.buffer` go through an incremental
  UTF-8 decoder first, so a character split across pieces arrives whole. Newlines and
  tabs stay; a carriage return before a newline is dropped; every other control or
  format character is shown as an escape (\\e, \\x07, \\u202e).

The app's own styling (dim, bold) is the only thing that reaches a terminal as an
escape sequence. It travels as marks that carry a random number chosen when this
process started, which no model or server can know, and the stream turns them into
SGR sequences on a terminal, or drops them elsewhere.
"""

from __future__ import annotations

import codecs
import contextlib
import io
import json
import re
import secrets
import sys
import unicodedata
from collections.abc import Iterator
from typing import Any, TextIO

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\x1b": "\\e"}
# Format characters that text needs and that cannot move or hide anything: the joiners shape
# Persian, Indic scripts and emoji sequences; tag characters spell the flags of regions (🏴 + tags).
_KEEP_FORMAT = frozenset("\u200c\u200d")
_UNSAFE_CATEGORIES = frozenset(("Cc", "Cf", "Cs", "Zl", "Zp"))


def _is_unsafe(ch: str) -> bool:
    if ch in _KEEP_FORMAT or "\U000e0020" <= ch <= "\U000e007f":
        return False
    return unicodedata.category(ch) in _UNSAFE_CATEGORIES


def _escape(ch: str) -> str:
    named = _NAMED.get(ch)
    if named is not None:
        return named
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _escape_run(s: str, keep_newlines: bool) -> str:
    out = []
    for ch in s:
        if ch.isprintable() or (keep_newlines and ch in "\n\t") or not _is_unsafe(ch):
            out.append(ch)
        else:
            out.append(_escape(ch))
    return "".join(out)


def safe_text(text: object, *, keep_newlines: bool = False) -> str:
    """`text` with control and format characters escaped (C0, DEL, C1, bidi controls, line separators,
    lone surrogates); `keep_newlines` keeps newlines and tabs as they are.

    Letters of every script, CJK, emoji (with their joiners) and spaces pass through unchanged.
    """
    s = str(text)
    if s.isprintable():  # the common case, in C
        return s
    if keep_newlines:  # line by line: most lines of a long text are printable and cost nothing
        return "\n".join(line if line.isprintable() else _escape_run(line, True) for line in s.split("\n"))
    return _escape_run(s, False)


def is_inert(text: str) -> bool:
    """True when `text` holds nothing but printable characters, newlines and tabs (what may reach a terminal)."""
    return all(c.isprintable() or c in "\n\t" or not _is_unsafe(c) for c in text)


def shorten(text: object, limit: int = 300) -> str:
    """`text` cut to about `limit` characters, with an ellipsis and how much was left out: an error message
    quoting a model's template or a server's body stays a sentence, however much they sent."""
    s = str(text)
    if len(s) <= limit:
        return s
    return f"{s[:limit].rstrip()}… ({len(s) - limit:,} more characters)"


# --- The app's own styling -------------------------------------------------------------------------------

_MARK = "\ue000" + secrets.token_hex(8)  # unguessable from outside this process
_STYLES = {"reset": "0", "bold": "1", "dim": "2"}
_MARK_RE = re.compile(re.escape(_MARK) + "([012])")


def style_marks(style: str, stream: Any = None) -> tuple[str, str] | None:
    """The marks that start and end `style` ("dim" or "bold") on `stream`: None unless it is a terminal
    behind a TerminalStream (the one place that turns them into escapes)."""
    stream = stream if stream is not None else sys.stdout
    if not (isinstance(stream, TerminalStream) and stream.isatty()):
        return None
    return f"{_MARK}{_STYLES[style]}", f"{_MARK}{_STYLES['reset']}"


def styled(text: str, style: str, stream: Any = None) -> str:
    """`text` in `style` on a terminal; plain elsewhere."""
    marks = style_marks(style, stream)
    return f"{marks[0]}{text}{marks[1]}" if marks else text


# --- The stream ------------------------------------------------------------------------------------------

class TerminalStream(io.TextIOBase):
    """A text stream in front of a terminal (or a pipe): whatever is written is escaped before it goes on.

    Pieces may split anything: an ESC at the end of one piece is escaped on its own, so the
    `[2J` that follows is plain text; a CR at the end of a piece waits for the next to see
    whether a newline follows. Bytes written to `.buffer` are decoded incrementally.
    """

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self._stream = stream
        self._cr_pending = False
        self.buffer = _BinaryIn(self)

    # What print(), input() and logging ask of a stream
    @property
    def raw_stream(self) -> TextIO:
        """The stream underneath, for the app's own trusted output (a progress bar's redraws)."""
        return self._stream

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._stream, "encoding", None) or "utf-8"

    @property
    def errors(self) -> str | None:  # type: ignore[override]
        return getattr(self._stream, "errors", None)

    def isatty(self) -> bool:
        try:
            return bool(self._stream.isatty())
        except (AttributeError, ValueError):
            return False

    def fileno(self) -> int:
        return self._stream.fileno()

    def writable(self) -> bool:
        return True

    def flush(self) -> None:
        self._stream.flush()

    def write(self, s: str) -> int:
        if not isinstance(s, str):
            raise TypeError(f"write() argument must be str, not {type(s).__name__}")
        if s:
            self._stream.write(self.render(s))
        return len(s)

    def finish(self) -> None:
        """Write what is held back (a final CR), as an escape."""
        if self._cr_pending:
            self._cr_pending = False
            self._stream.write("\\r")
        self.flush()

    # The filter
    def render(self, s: str) -> str:
        """`s` as it may reach the terminal: the app's marks as styles, everything else inert."""
        if self._cr_pending:
            s = "\r" + s
            self._cr_pending = False
        if s.endswith("\r"):
            s, self._cr_pending = s[:-1], True
        s = s.replace("\r\n", "\n")
        if _MARK not in s:
            return safe_text(s, keep_newlines=True)
        sgr = self.isatty()
        parts = _MARK_RE.split(s)  # text, code, text, code, ..., text
        out = []
        for i, part in enumerate(parts):
            if i % 2:
                if sgr:
                    out.append(f"\x1b[{part}m")
            else:
                out.append(safe_text(part, keep_newlines=True))
        return "".join(out)


class _BinaryIn(io.RawIOBase):
    """`.buffer` of a TerminalStream: bytes decoded as UTF-8 incrementally (a character split across
    writes arrives whole; invalid bytes become U+FFFD), then escaped like text."""

    def __init__(self, text: TerminalStream) -> None:
        super().__init__()
        self._text = text
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        data = bytes(b)
        self._text.write(self._decoder.decode(data))
        return len(data)

    def flush(self) -> None:
        self._text.flush()

    def finish(self) -> None:
        tail = self._decoder.decode(b"", final=True)
        if tail:
            self._text.write(tail)


def raw_stream(stream: Any) -> Any:
    """The stream under a TerminalStream (or the stream itself), for output the app itself draws."""
    return stream.raw_stream if isinstance(stream, TerminalStream) else stream


@contextlib.contextmanager
def install() -> Iterator[None]:
    """For the duration, `sys.stdout` and `sys.stderr` escape everything that passes through them."""
    saved = sys.stdout, sys.stderr
    wrapped = [TerminalStream(s) if s is not None and not isinstance(s, TerminalStream) else s for s in saved]
    sys.stdout, sys.stderr = wrapped
    try:
        yield
    finally:
        for stream in wrapped:
            if isinstance(stream, TerminalStream):
                with contextlib.suppress(OSError, ValueError):
                    stream.buffer.finish()
                    stream.finish()
        sys.stdout, sys.stderr = saved


# --- JSON for a terminal ---------------------------------------------------------------------------------

_JSON_UNSAFE = re.compile(r"[\x7f-\x9f\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e"
                          r"\u200b\u200e-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb"
                          r"\ud800-\udfff]")


def json_text(obj: Any, **kwargs: Any) -> str:
    """`json.dumps(obj, ensure_ascii=False)` with every character a terminal would act on written as a JSON
    \\u escape: still the same JSON for a program, and inert on a terminal (no double escaping)."""
    text = json.dumps(obj, ensure_ascii=False, **kwargs)
    text = _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    if not is_inert(text):  # a rarer format character (astral ones): ASCII JSON is exact and inert
        text = json.dumps(obj, ensure_ascii=True, **kwargs)
    return text

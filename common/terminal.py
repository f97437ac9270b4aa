"""Text that users or models control, made safe to print on a terminal.

A conversation title, a model name or a file name may hold escape sequences
(ESC [ 2 J clears the screen, OSC 0 sets the window title). Printed raw, they act;
escaped, they read as what they are.
"""

from __future__ import annotations

import unicodedata

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\x1b": "\\e"}


def _escape(ch: str, keep_newlines: bool) -> str:
    if keep_newlines and ch in "\n\t":
        return ch
    if ch in _NAMED:
        return _NAMED[ch]
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def safe_text(text: object, *, keep_newlines: bool = False) -> str:
    """`text` with control and format characters escaped (C0, DEL, C1, bidi overrides).

    Ordinary letters, CJK and emoji pass through unchanged.
    """
    s = str(text)
    # Fast path: nothing below U+0020, no DEL/C1, no bidi or other format characters.
    if s.isprintable() and not any("\u0080" <= c <= "\u009f" for c in s):
        return s
    out = []
    for ch in s:
        cat = unicodedata.category(ch)
        if cat in ("Cc", "Cf") and not (ch == "\u200d"):  # keep ZWJ: it joins emoji sequences
            out.append(_escape(ch, keep_newlines))
        else:
            out.append(ch)
    return "".join(out)

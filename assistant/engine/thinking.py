"""A reasoning model's reply, told apart as it streams: thinking pieces and answer pieces.

Four formats are in use in 2026 (the catalogue records each family's, `models.catalogue.THINKING_FORMATS`):

    think_tags      <think>…</think>answer                  Qwen3, Qwen3.5, SmolLM3, DeepSeek-R1 distills, OLMo-3
    gemma4_channel  <|channel>thought\\n…<channel|>answer    Gemma 4
    harmony         <|channel|>analysis<|message|>…<|end|><|start|>assistant<|channel|>final<|message|>answer
                                                            gpt-oss
    mistral_think   [THINK]…[/THINK]answer                  Ministral 3 Reasoning, Magistral

`ThinkingParser` takes text in whatever pieces it arrives (a delimiter may be split across
tokens, or across the runner's batches) and gives back `Piece`s of kind "thinking" or
"answer", never a delimiter. Only the tail that could still become a delimiter is held
back, so nothing else is delayed. A generation prompt that already opened the thinking
(Qwen3.5's ends in `<think>\\n`) is handled by starting the parser inside it
(`ThinkingParser.for_prompt`).

Gemma 4's and Harmony's markers are special tokens, which plain detokenizing renders as
nothing: the runner renders each format's `markers` as their text so the parser sees them.
The parser is shared by the runner (local models) and `RemoteEngine` (inline tags from a server).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

THINKING = "thinking"
ANSWER = "answer"
NONE = "none"  # a user's override: never parse thinking
AUTO = "auto"  # a remote's inline text: any of the tag formats, whichever opens

# (open, close) pairs of the tag formats; harmony is structural and handled apart.
_TAGS: dict[str, tuple[tuple[str, str], ...]] = {
    "think_tags": (("<think>", "</think>"),),
    "gemma4_channel": (("<|channel>thought", "<channel|>"),),
    "mistral_think": (("[THINK]", "[/THINK]"),),
}
_TAGS[AUTO] = _TAGS["think_tags"] + _TAGS["mistral_think"] + _TAGS["gemma4_channel"]

_HARMONY = ("<|start|>", "<|channel|>", "<|message|>", "<|end|>", "<|constrain|>", "<|return|>", "<|call|>")
FORMATS = ("think_tags", "gemma4_channel", "harmony", "mistral_think")

# The marker strings that are single special tokens in the real vocabularies: the runner renders
# them as text (plain detokenizing would drop them) and the parser keeps them out of what is shown.
MARKERS: dict[str, tuple[str, ...]] = {
    "think_tags": ("<think>", "</think>"),
    "gemma4_channel": ("<|channel>", "<channel|>"),
    "harmony": ("<|start|>", "<|channel|>", "<|message|>", "<|end|>", "<|constrain|>"),
    "mistral_think": ("[THINK]", "[/THINK]"),
}

# What closes a thinking block in each format, as the model itself would write it: appended to the
# context when a thinking budget runs out, so the model goes on to answer.
CLOSING: dict[str, str] = {
    "think_tags": "\n</think>\n\n",
    "gemma4_channel": "<channel|>",
    "harmony": "<|end|><|start|>assistant<|channel|>final<|message|>",
    "mistral_think": "[/THINK]",
}

# An empty thinking block: what "thinking off" appends to a generation prompt whose template has no
# switch of its own (the model then starts on its answer). For a prompt that opened the thinking,
# CLOSING is appended instead.
EMPTY_BLOCK: dict[str, str] = {
    "think_tags": "<think>\n\n</think>\n\n",
    "gemma4_channel": "<|channel>thought\n<channel|>",
    "harmony": "<|channel|>analysis<|message|><|end|><|start|>assistant<|channel|>final<|message|>",
    "mistral_think": "[THINK][/THINK]",
}

# A Harmony header ("assistant", "assistant<|channel|>final") is short; text that runs on without
# one is a model writing plainly: it is the answer.
_MAX_HEADER_CHARS = 200


@dataclass(frozen=True)
class Piece:
    """A part of a reply: `kind` is "thinking" or "answer"; `tokens`, where known, the tokens the reply
    had generated when this piece left (a live count for the window)."""

    kind: str
    text: str
    tokens: int | None = None


def detect_format(template: str | None, architecture: str | None = None, catalogue: str | None = None) -> str | None:
    """The thinking format of a model: the catalogue's word for a known family, else what its chat
    template writes, else what its architecture implies; None for a model that does not think."""
    if catalogue in FORMATS:
        return catalogue
    text = template or ""
    if "<|channel|>" in text and "<|message|>" in text:
        return "harmony"
    if "<|channel>" in text:
        return "gemma4_channel"
    if "[THINK]" in text:
        return "mistral_think"
    if "<think>" in text or "</think>" in text:
        return "think_tags"
    arch = (architecture or "").lower()
    if arch == "gpt-oss":
        return "harmony"
    if arch.startswith("gemma4"):
        return "gemma4_channel"
    return None


def opens_thinking(fmt: str | None, prompt: str) -> bool:
    """Does the generation prompt end inside an open thinking block (Qwen3.5's `<think>\\n`)?"""
    if fmt is None or fmt == NONE:
        return False
    if fmt == "harmony":
        return ThinkingParser.for_prompt(fmt, prompt).state == THINKING
    tail = prompt.rstrip()
    return any(tail.endswith(open_) for open_, _ in _TAGS.get(fmt, ()))


def close_block(fmt: str | None, prompt: str) -> str:
    """Text that leaves `prompt` (a generation prompt) with its thinking done and empty: appended for
    "thinking off" without a template switch, and before a continued reply's earlier answer."""
    if fmt is None or fmt == NONE or fmt not in CLOSING:
        return ""
    if opens_thinking(fmt, prompt):
        return CLOSING[fmt]
    if fmt == "harmony" and ThinkingParser.for_prompt(fmt, prompt).state == ANSWER:
        return ""  # already in the final channel
    return EMPTY_BLOCK[fmt]


def reply_opening(fmt: str | None, prompt: str) -> int | None:
    """Where, in a generation prompt, the reply's own thinking markup begins (Qwen3.5's `<think>\n`,
    an empty block that switches thinking off, Harmony's channel header): the place a later turn's
    prompt, with this reply rendered back without its thinking, stops matching this one. None when the
    prompt ends before any such markup."""
    if fmt is None or fmt == NONE:
        return None
    tail_start = max(0, len(prompt) - _GENERATION_TAIL_CHARS)
    if fmt == "harmony":
        # The reply's header follows the last message from anyone else; an empty block appended for
        # "thinking off" adds a second assistant header after it, which must not be taken for the first.
        last = max(prompt.rfind(f"<|start|>{role}") for role in ("user", "system", "developer"))
        start = prompt.find("<|start|>assistant", max(last, 0))
        at = prompt.find("<|channel|>", start) if start >= 0 else -1
        return at if at >= tail_start else None
    best = None
    for open_, _ in _TAGS.get(fmt, ()):
        at = prompt.rfind(open_, tail_start)
        if at >= 0 and (best is None or at < best):
            best = at
    return best


# A generation prompt's own markup fits in this many characters at the prompt's end.
_GENERATION_TAIL_CHARS = 120


class _Scanner:
    """Splits streamed text at delimiters, holding back only a tail that could start one."""

    def __init__(self, delimiters: tuple[str, ...]):
        self.delimiters = tuple(sorted(set(delimiters), key=len, reverse=True))
        self._pattern = re.compile("|".join(re.escape(d) for d in self.delimiters)) if self.delimiters else None
        self._firsts = "".join(sorted({d[0] for d in self.delimiters}))
        self._held = ""

    def feed(self, text: str) -> list[tuple[str, bool]]:
        """(text, is_delimiter) pairs, in order."""
        text = self._held + text
        self._held = ""
        out: list[tuple[str, bool]] = []
        if self._pattern is None:
            return [(text, False)] if text else []
        at = 0
        for m in self._pattern.finditer(text):
            if m.start() > at:
                out.append((text[at:m.start()], False))
            out.append((m.group(0), True))
            at = m.end()
        rest = text[at:]
        keep = self._partial(rest)
        if keep:
            self._held = rest[len(rest) - keep:]
            rest = rest[: len(rest) - keep]
        if rest:
            out.append((rest, False))
        return out

    def flush(self) -> str:
        held, self._held = self._held, ""
        return held

    def _partial(self, text: str) -> int:
        """The longest suffix of `text` that is a proper prefix of a delimiter."""
        longest = max((len(d) for d in self.delimiters), default=1) - 1
        start = max(0, len(text) - longest)
        for i in range(start, len(text)):
            if text[i] in self._firsts:
                tail = text[i:]
                if any(d.startswith(tail) and d != tail for d in self.delimiters):
                    return len(text) - i
        return 0


class ThinkingParser:
    """Streaming parser for one reply. `feed(text)` and `finish()` return the `Piece`s now safe to show.

    `state` says where the reply is: "start" (nothing shown yet), "thinking", "answer", or for Harmony
    "header" (between messages). `phase` is "thinking" or "answer": what a token now counts as.
    """

    def __init__(self, fmt: str | None, *, inside: bool = False, answering: bool = False):
        self.format = fmt if fmt in (*FORMATS, AUTO) else None
        self.harmony = self.format == "harmony"
        self._pairs = _TAGS.get(self.format or "", ())
        if self.harmony:
            delimiters: tuple[str, ...] = _HARMONY
        else:
            delimiters = tuple(d for pair in self._pairs for d in pair)
        self._scanner = _Scanner(delimiters)
        self.state = "header" if self.harmony else "start"
        self._close: str | None = None  # the closing delimiter expected, inside a tag block
        self._pending_ws = ""  # whitespace at the end of the thinking so far: shown only if more follows
        self._header = ""  # Harmony: the header being read (role, channel)
        self._channel: str | None = None
        self._in_channel = False
        self.thinking_seen = False  # a thinking block opened (even an empty one)
        self.thinking_text: list[str] = []
        self.answer_text: list[str] = []
        if inside:
            self._open_thinking(self._pairs[0][1] if self._pairs else None)
        elif answering:  # a reply continued from its answer: the thinking is over
            self.state = ANSWER
            self.answer_text.append("")  # text that follows is not the answer's start: keep its spaces

    @classmethod
    def for_prompt(cls, fmt: str | None, prompt: str) -> ThinkingParser:
        """A parser for the reply to `prompt`: started inside the thinking when the prompt opened it."""
        if fmt == "harmony":
            parser = cls(fmt)
            start = prompt.rfind("<|start|>")
            if start >= 0:
                parser.feed(prompt[start:])  # the reply's own header so far ("<|start|>assistant")
                parser.thinking_text, parser.answer_text = [], []
                parser._pending_ws = ""
                parser._header = ""  # the role is the prompt's: only the model's own text may become an answer
            return parser
        if fmt in _TAGS:
            tail = prompt.rstrip()
            for open_, close in _TAGS[fmt]:
                if tail.endswith(open_):
                    parser = cls(fmt)
                    parser._open_thinking(close)
                    return parser
        return cls(fmt)

    # --- What the reply is now
    @property
    def phase(self) -> str:
        if self.state == THINKING:
            return THINKING
        if self.state == "header":  # Harmony's markup between messages goes with the thinking, but the final's
            return ANSWER if (self._channel or "").strip().startswith("final") else THINKING
        return ANSWER

    @property
    def holding(self) -> bool:
        """Text is held back that may be the start of a delimiter: what it is will be known later."""
        return bool(self._scanner._held)

    @property
    def unfinished(self) -> bool:
        """The reply ended (or is now) inside its thinking."""
        return self.state == THINKING

    @property
    def thinking(self) -> str:
        return "".join(self.thinking_text).strip()

    @property
    def answer(self) -> str:
        return "".join(self.answer_text)

    # --- Feeding
    def feed(self, text: str) -> list[Piece]:
        if not text:
            return []
        if self.format is None:
            return self._emit([], ANSWER, text)
        out: list[Piece] = []
        for part, is_delimiter in self._scanner.feed(text):
            if is_delimiter:
                self._delimiter(part, out)
            else:
                self._text(part, out)
        return _merged(out)

    def finish(self) -> list[Piece]:
        """The end of the reply: whatever was held back."""
        out: list[Piece] = []
        rest = self._scanner.flush() if self.format is not None else ""
        if rest:
            self._text(rest, out)
        if self.harmony and self.state == "header" and self._header.strip() and not self.thinking_seen \
                and not self.answer_text:
            # Never a message: a model that wrote plainly under a Harmony template.
            self._emit(out, ANSWER, self._header.lstrip())
            self._header = ""
        self._pending_ws = ""
        return _merged(out)

    # --- Tag formats
    def _open_thinking(self, close: str | None) -> None:
        self.state = THINKING
        self._close = close
        self.thinking_seen = True
        self._pending_ws = ""
        if self.thinking_text:
            self.thinking_text.append("\n\n")  # a second block in one reply: kept apart from the first

    def _text(self, text: str, out: list[Piece]) -> None:
        if self.harmony:
            self._harmony_text(text, out)
            return
        if self.state == "start":
            stripped = text.lstrip()
            if not stripped:
                return  # whitespace before anything: a thinking block may still open
            self.state = ANSWER
            self._emit(out, ANSWER, stripped)
        elif self.state == THINKING:
            self._thinking_text(text, out)
        else:
            self._emit(out, ANSWER, text)

    def _thinking_text(self, text: str, out: list[Piece]) -> None:
        text = self._pending_ws + text
        if not "".join(self.thinking_text).strip():
            text = text.lstrip()  # the block's leading newline is not thinking
            self._pending_ws = ""
        body = text.rstrip()
        self._pending_ws = text[len(body):]
        if body:
            self._emit(out, THINKING, body)

    def _delimiter(self, delimiter: str, out: list[Piece]) -> None:
        if self.harmony:
            self._harmony_delimiter(delimiter, out)
            return
        opens = {o: c for o, c in self._pairs}
        if self.state == THINKING:
            if delimiter == self._close:
                self.state, self._close, self._pending_ws = "start", None, ""
            # Another opening inside the thinking, or a foreign closing: markup, never shown.
            return
        if delimiter in opens and self.state == "start":
            self._open_thinking(opens[delimiter])
            return
        if delimiter in opens:
            self._emit(out, ANSWER, delimiter)  # an answer that writes "<think>" itself (about XML, say)
            return
        # A closing delimiter with no opening: a generation prompt opened the thinking but the parser was
        # not told. Before any answer it only ends an (empty) block; later it is dropped, never shown.
        if self.state == "start":
            self.thinking_seen = True

    # --- Harmony
    def _harmony_text(self, text: str, out: list[Piece]) -> None:
        if self.state == THINKING:
            self._thinking_text(text, out)
        elif self.state == ANSWER:
            if not self.answer_text:
                text = text.lstrip()
            if text:
                self._emit(out, ANSWER, text)
        else:  # a header: the role, or the channel's name
            if self._in_channel:
                self._channel = (self._channel or "") + text
            else:
                self._header += text
            if len(self._header) + len(self._channel or "") > _MAX_HEADER_CHARS:
                # No header ever ends this: plain text, the answer.
                plain = (self._header + (self._channel or "")).lstrip()
                self._header, self._channel, self._in_channel = "", None, False
                self.state = ANSWER
                self._emit(out, ANSWER, plain)

    def _harmony_delimiter(self, delimiter: str, out: list[Piece]) -> None:
        if delimiter == "<|start|>":
            self._to_header()
        elif delimiter == "<|channel|>":
            if self.state != "header":
                self._to_header()
            self._in_channel, self._channel = True, ""
        elif delimiter == "<|constrain|>":
            self._in_channel = False  # "<|constrain|>json": a content type, not part of the channel
        elif delimiter == "<|message|>":
            if self.state != "header":
                return  # a stray marker inside a message: markup, not shown
            channel = (self._channel or "").strip().split(" ")[0]
            if channel in ("analysis", "commentary"):
                self.state = THINKING
                self.thinking_seen = True
                if self.thinking_text:
                    self.thinking_text.append("\n\n")
                self._pending_ws = ""
            else:  # "final", or a message with no channel named
                self.state = ANSWER
            self._header, self._channel, self._in_channel = "", None, False
        else:  # <|end|>, <|return|>, <|call|>: the message is over
            self._to_header()

    def _to_header(self) -> None:
        self.state = "header"
        self._pending_ws = ""
        self._header, self._channel, self._in_channel = "", None, False

    # --- Output
    def _emit(self, out: list[Piece], kind: str, text: str) -> list[Piece]:
        if text:
            (self.thinking_text if kind == THINKING else self.answer_text).append(text)
            out.append(Piece(kind, text))
        return out


def _merged(pieces: list[Piece]) -> list[Piece]:
    out: list[Piece] = []
    for p in pieces:
        if out and out[-1].kind == p.kind:
            out[-1] = Piece(p.kind, out[-1].text + p.text)
        else:
            out.append(p)
    return out

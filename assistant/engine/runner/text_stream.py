"""Turn token bytes into text as it streams.

Two problems a naive `piece.decode()` has: a multi-byte UTF-8 character can be
split across tokens (decode it incrementally, so it appears once complete and
never as garbage), and a stop string can arrive in pieces (hold back only the tail
that could still become a stop string, so nothing else is delayed).
"""

import codecs


class TextStream:
    def __init__(self, stop_strings: list[str] | None = None):
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._stops = [s for s in (stop_strings or []) if s]
        self._held = ""  # decoded text that may be the start of a stop string
        self.stopped = False  # a stop string was seen; nothing more is emitted

    def feed(self, data: bytes) -> str:
        """Bytes of one token in; the text that is now safe to show out."""
        if self.stopped:
            return ""
        text = self._held + self._decoder.decode(data)
        if not self._stops:
            self._held = ""
            return text
        for stop in self._stops:
            at = text.find(stop)
            if at >= 0:
                self.stopped = True
                self._held = ""
                return text[:at]
        keep = self._partial_stop_len(text)
        self._held = text[len(text) - keep :] if keep else ""
        return text[: len(text) - keep]

    def flush(self) -> str:
        """At the end: whatever was held back. A character cut off by the end of the reply
        (a length limit in the middle of an emoji) is dropped, not shown as U+FFFD."""
        if self.stopped:
            return ""
        self._decoder.reset()  # forget the bytes of an incomplete character
        text = self._held
        self._held = ""
        return text

    def _partial_stop_len(self, text: str) -> int:
        """Length of the longest suffix of text that is a proper prefix of a stop string.

        Runs once per token: such a suffix starts with the stop string's first character,
        so only the places where that character occurs near the end are tried.
        """
        best = 0
        for stop in self._stops:
            first, longest = stop[0], min(len(stop) - 1, len(text))
            at = text.find(first, len(text) - longest)
            while at != -1:
                n = len(text) - at
                if n > best and stop.startswith(text[at:]):
                    best = n
                    break  # the earliest start is the longest suffix for this stop string
                at = text.find(first, at + 1)
        return best

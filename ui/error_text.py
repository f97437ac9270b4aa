"""Operating-system errors in a sentence a person reads, not "[Errno 111] Connection refused".

    readable("gpu-box cannot be reached ([Errno 111] Connection refused)")
    -> "gpu-box cannot be reached (nothing answers at that address and port)"

The core's sentences sometimes carry an OS error's own text, in Python's wording; the
window shows them with the errno part turned into words (an unknown one keeps the OS's
own message, without the number).
"""

from __future__ import annotations

import errno
import re

_WORDS = {
    "ECONNREFUSED": "nothing answers at that address and port",
    "EHOSTUNREACH": "that computer cannot be reached from here",
    "EHOSTDOWN": "that computer is not answering",
    "ENETUNREACH": "this computer has no route to that network",
    "ENETDOWN": "the network is down",
    "ETIMEDOUT": "the connection timed out",
    "ECONNRESET": "the other side closed the connection",
    "ECONNABORTED": "the connection was dropped",
    "EPIPE": "the other side closed the connection",
    "EADDRINUSE": "another program already uses that port",
    "EADDRNOTAVAIL": "that address is not one of this computer's",
    "ENOENT": "there is no such file or folder",
    "EACCES": "permission was refused",
    "EPERM": "permission was refused",
    "ENOSPC": "the disk is full",
    "EROFS": "the disk is read-only",
    "EISDIR": "that is a folder, not a file",
}
# getaddrinfo's own codes (negative on Linux): the host name could not be looked up.
_LOOKUP = "the host name cannot be found; check the address"
_ERRNO = re.compile(r"\[Errno (-?\d+)\]\s*([^\]\)\n;]*)")


def _words(number: int, message: str) -> str:
    if number < 0:
        return _LOOKUP
    name = errno.errorcode.get(number, "")
    if name in _WORDS:
        return _WORDS[name]
    if number in (10061,):  # Windows' WSAECONNREFUSED
        return _WORDS["ECONNREFUSED"]
    message = message.strip().rstrip(".")
    return message[:1].lower() + message[1:] if message else "the operating system refused it"


def readable(text: str) -> str:
    """`text` with every "[Errno N] message" in words."""
    return _ERRNO.sub(lambda m: _words(int(m.group(1)), m.group(2)), text)

"""A GBNF grammar (llama.cpp's) checked before llama.cpp parses it.

llama.cpp's grammar parser recurses once per nested group, so a grammar of thousands of nested
parentheses would overflow its stack and take the model's process with it (and the file would be
remembered as crashing). A grammar is bounded in size and nesting here first.
"""

from __future__ import annotations

MAX_GRAMMAR_CHARS = 64_000
MAX_NESTING = 64


def grammar_problem(text: str) -> str | None:
    """A sentence saying why llama.cpp must not be given this grammar, or None."""
    if len(text) > MAX_GRAMMAR_CHARS:
        return f"The grammar is longer than {MAX_GRAMMAR_CHARS:,} characters."
    depth = deepest = 0
    quote: str | None = None
    in_class = escaped = False
    for ch in text:
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif quote is not None:
            quote = None if ch == quote else quote
        elif in_class:
            in_class = ch != "]"
        elif ch == '"':
            quote = ch
        elif ch == "[":
            in_class = True
        elif ch == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif ch == ")":
            depth = max(0, depth - 1)
    if deepest > MAX_NESTING:
        return f"The grammar nests groups {deepest} deep; at most {MAX_NESTING} are allowed."
    return None

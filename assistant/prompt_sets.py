"""Prompt sets: named lists of prompts that Compare runs as a batch, kept in the history.

    sets = PromptSetService(history)
    sets.save("daily work", ["Summarise…", "Fix…"], system_prompt=None)
    sets.all(); sets.get("daily work"); sets.delete("daily work")

The one way front ends write prompt sets (the window's Compare page and `assistant
compare sets`), as the chat service is for conversations: the window never writes the
history itself. The history checks names and prompts and says what is wrong in a sentence.
"""

from __future__ import annotations

from typing import Any

from common.errors import UserError


class PromptSetService:
    def __init__(self, history: Any) -> None:
        self.history = history

    def _store(self) -> Any:
        if self.history is None:
            raise UserError("Prompt sets are kept in the history, and there is none here.")
        return self.history

    def all(self) -> list[Any]:
        """Every prompt set, by name."""
        return list(self._store().prompt_sets())

    def get(self, name: str) -> Any:
        return self._store().get_prompt_set(name)

    def save(self, name: str, prompts: list[str], *, system_prompt: str | None = None, replace: bool = False) -> Any:
        """Save a set (`replace`: one of the same name); returns it as saved (its name cleaned)."""
        return self._store().save_prompt_set(name, prompts, system_prompt=system_prompt, replace=replace)

    def delete(self, name: str) -> None:
        """Delete a set; the comparisons it ran stay."""
        self._store().delete_prompt_set(name)

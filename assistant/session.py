"""A chat session: one conversation's messages, its settings, and the engine.

This is what the command line and the window drive. It keeps the visible thread
of messages, asks the engine for a reply, and (when given a history store) saves
each message as it happens, the streaming reply included.
"""

from collections.abc import Iterator

from assistant.engine import Engine, GenerationSettings, Response


class ChatSession:
    def __init__(self, engine: Engine, *, system_prompt: str | None = None,
                 settings: GenerationSettings | None = None, history=None):
        self.engine = engine
        self.system_prompt = system_prompt
        self.settings = settings or GenerationSettings()
        self.history = history  # an assistant.history store, or None to keep nothing
        self.conversation_id: str | None = None
        self.messages: list[dict] = []  # {role, content} of the visible thread, system excluded
        self._leaf_id: str | None = None  # the last saved message on this thread
        self.last_response: Response | None = None

    # --- Conversation lifecycle
    def new(self) -> None:
        self.conversation_id = None
        self.messages = []
        self._leaf_id = None

    def resume(self, conversation_id) -> None:
        """Continue a saved conversation from its current branch."""
        conv = self.history.get_conversation(conversation_id)
        self.conversation_id = conv.id
        self.system_prompt = conv.system_prompt
        thread = [m for m in conv.messages if m.role != "system"]
        self.messages = [{"role": m.role, "content": m.content} for m in thread]
        self._leaf_id = thread[-1].id if thread else None

    def prompt_messages(self) -> list[dict]:
        system = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        return system + self.messages

    # --- A turn
    def send(self, text: str) -> Iterator[str]:
        """Add the user's message and stream the reply. `self.last_response` has its stats."""
        self.messages.append({"role": "user", "content": text})
        self._save_user(text)
        response = self.engine.chat(self.prompt_messages(), self.settings)
        self.last_response = response
        saver = self._start_reply_save()
        chunks = iter(response)
        try:
            for chunk in chunks:
                if saver:
                    saver.append(chunk)
                yield chunk
        finally:
            chunks.close()  # if the caller walked away, this stops generation and records stats
            reply = "".join(response.chunks)
            self.messages.append({"role": "assistant", "content": reply})
            if saver:
                stats = response.stats.to_dict() if response.stats else None
                status = _status_for(response)
                self._leaf_id = saver.finish(status=status, stats=stats, content=reply)

    def cancel(self) -> None:
        if self.last_response:
            self.last_response.cancel()

    # --- Persistence (a no-op without a store)
    def _ensure_conversation(self, first_text: str) -> None:
        if self.history is None or self.conversation_id is not None:
            return
        active = self.engine.active
        self.conversation_id = self.history.create_conversation(
            model=active.entry.name if active else None,
            system_prompt=self.system_prompt,
            settings=self.settings.to_dict(),
        )

    def _save_user(self, text: str) -> None:
        if self.history is None:
            return
        self._ensure_conversation(text)
        self._leaf_id = self.history.add_message(
            self.conversation_id, "user", text, parent_id=self._leaf_id, status="complete"
        )

    def _start_reply_save(self):
        if self.history is None:
            return None
        return self.history.start_reply(self.conversation_id, parent_id=self._leaf_id)


def _status_for(response: Response) -> str:
    reason = response.stats.stop_reason if response.stats else "stopped"
    return {"stopped": "stopped", "error": "error"}.get(reason, "complete")


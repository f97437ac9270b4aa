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
        self.conversation_id: int | None = None
        self.messages: list[dict] = []  # {role, content} of the visible thread, system excluded
        self.last_response: Response | None = None

    # --- Conversation lifecycle
    def new(self) -> None:
        self.conversation_id = None
        self.messages = []

    def resume(self, conversation_id: int) -> None:
        """Continue a saved conversation from the branch it shows."""
        conv = self.history.get_conversation(int(conversation_id))
        self.conversation_id = conv.id
        self.system_prompt = conv.system_prompt
        self.messages = [m for m in conv.chat_messages() if m["role"] != "system"]

    def prompt_messages(self) -> list[dict]:
        system = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        return system + self.messages

    # --- A turn
    def send(self, text: str) -> Iterator[str]:
        """Add the user's message and stream the reply. `self.last_response` has its stats.

        With a history store the user's message is saved before generation starts, and
        the reply is saved as it grows (marked `streaming`), then finished with its stats.
        """
        self.messages.append({"role": "user", "content": text})
        saver = self._save_turn_start(text)
        response = self.engine.chat(self.prompt_messages(), self.settings)
        self.last_response = response
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
                saver.finish(_status_for(response), stats=stats, error=stats and stats.get("error"))

    def cancel(self) -> None:
        if self.last_response:
            self.last_response.cancel()

    # --- Persistence (a no-op without a store)
    def _save_turn_start(self, text: str):
        if self.history is None:
            return None
        active = self.engine.active
        model = active.entry.name if active else None
        if self.conversation_id is None:
            conv = self.history.create_conversation(model=model, system_prompt=self.system_prompt,
                                                    settings=self.settings.to_dict())
            self.conversation_id = conv.id
        elif model:
            self.history.update_conversation(self.conversation_id, model=model)
        self.history.add_message(self.conversation_id, "user", text)
        return self.history.start_reply(self.conversation_id)


def _status_for(response: Response) -> str:
    reason = response.stats.stop_reason if response.stats else "stopped"
    return {"stopped": "stopped", "error": "error"}.get(reason, "complete")

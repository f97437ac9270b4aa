"""A chat session: one conversation's messages, its settings, and the engine.

The chat service keeps one session per open conversation, so a turn does not
read the conversation back from the database. A session asks the engine for a
reply and, when given a history store, saves each message as it happens, the
streaming reply included.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from typing import Any

from assistant.engine import Engine, GenerationSettings, Response
from assistant.engine.thinking import ANSWER, THINKING, Piece
from assistant.images import MAX_IMAGES_PER_MESSAGE, ImageAttachment, ImageError, ModelCannotSee
from common.errors import UserError


class ReplyStream:
    """A reply on its way: iterating gives the answer's text; `pieces()` gives thinking and answer apart.
    Whichever is used, the reply is saved with both as it streams."""

    def __init__(self, pieces: Generator[Piece, None, None]) -> None:
        self._pieces = pieces

    def pieces(self) -> Generator[Piece, None, None]:
        return self._pieces

    def __iter__(self) -> Iterator[str]:
        try:
            for piece in self._pieces:
                if piece.kind == ANSWER:
                    yield piece.text
        finally:
            self._pieces.close()  # walking away stops the reply

    def close(self) -> None:
        self._pieces.close()


class ChatSession:
    def __init__(self, engine: Engine, *, system_prompt: str | None = None,
                 settings: GenerationSettings | None = None, history: Any = None):
        self.engine = engine
        self.system_prompt = system_prompt
        self.settings = settings or GenerationSettings()
        self.history = history  # an assistant.history store, or None to keep nothing
        self.conversation_id: int | None = None
        self.messages: list[dict] = []  # {role, content} of the visible thread, system excluded
        self.leaf_id: int | None = None  # the last saved message of the visible thread
        self.last_response: Response | None = None
        self.user_message: Any = None  # the saved user message of the turn in flight (history Message)
        self.reply_id: int | None = None  # the saved reply being streamed, once there is one
        self.saved_reply: Any = None  # the finished reply as saved (history Message), after a turn
        self.conversation_settings: dict[str, Any] | None = None  # a new conversation's own overrides, if any

    # --- Conversation lifecycle
    def new(self) -> None:
        self.conversation_id = None
        self.messages = []
        self.leaf_id = None

    def resume(self, conversation_id: int) -> None:
        """Continue a saved conversation from the branch it shows."""
        conv = self.history.get_conversation(int(conversation_id))
        self.conversation_id = conv.id
        self.system_prompt = conv.system_prompt
        thread = [m for m in conv.thread if m.role != "system"]
        self.messages = [self._from_history(m) for m in thread]
        self.leaf_id = thread[-1].id if thread else None

    def _from_history(self, m) -> dict:
        """A saved message as the engine takes it, its images read back from the history's files."""
        out = {"role": m.role, "content": m.content}
        if getattr(m, "thinking", None):  # a reply's thinking rides along: the chat template may keep it
            out["thinking"] = m.thinking
        refs = getattr(m, "images", None)
        if refs:
            out["images"] = [ImageAttachment(self.history.image_data(r), r.sha256, r.mime, r.name, r.width, r.height)
                             for r in refs]
        return out

    def prompt_messages(self) -> list[dict]:
        system = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        return system + self.messages

    # --- A turn: each call saves what the user wrote at once and returns the reply's stream
    def send(self, text: str, images: list[ImageAttachment] | None = None) -> ReplyStream:
        """Add the user's message and stream the reply. `self.last_response` has its stats.

        With a history store the user's message is saved before generation starts, and
        the reply is saved as it grows (marked `streaming`), then finished with its stats.
        Images are checked first (the model must see, each file must decode): a bad one is a
        UserError sentence and nothing is saved.
        """
        images = self.check_images(images)
        message: dict = {"role": "user", "content": text}
        if images:
            message["images"] = images
        saver = None
        self.user_message = None
        if self.history is not None:
            self._ensure_conversation()
            self.user_message = self.history.add_message(self.conversation_id, "user", text, images=images or None)
            saver = self.history.start_reply(self.conversation_id, parent_id=self.user_message.id)
        self.messages.append(message)
        return self._stream(saver)

    def check_images(self, images: list[ImageAttachment] | None, *, per_message: bool = True) -> list[ImageAttachment]:
        """The images, each decoded once in a process of its own; a sentence for the first that cannot be used,
        or when the loaded model cannot see."""
        if not images:
            return []
        if per_message and len(images) > MAX_IMAGES_PER_MESSAGE:
            raise ImageError(f"A message may hold at most {MAX_IMAGES_PER_MESSAGE} images; this one has {len(images)}.")
        summary = self.engine.summary()
        if summary is not None and summary.vision is False:
            raise ModelCannotSee(f"{summary.name} cannot see images: it has no image projector. Choose a model marked "
                                 "as seeing images, or send the message without them.")
        unchecked = [i for i in images if i.width is None]
        if unchecked:
            from assistant.engine.image_check import check_images

            checked = {c.image.sha256: c.image for c in check_images(unchecked)}
            images = [checked.get(i.sha256, i) if i.width is None else i for i in images]
        return list(images)

    def complete(self, text: str) -> ReplyStream:
        """Text completion, no chat template: the reply continues `text` (base models).

        Saved like a turn: the text as the user's message, the continuation as the reply.
        """
        self.user_message = None
        saver = None
        if self.history is not None:
            self._ensure_conversation()
            self.user_message = self.history.add_message(self.conversation_id, "user", text)
            saver = self.history.start_reply(self.conversation_id, parent_id=self.user_message.id)
        self.messages.append({"role": "user", "content": text})
        response = self.engine.complete(text, self.settings)
        self.last_response = response
        self.reply_id = saver.id if saver is not None else None
        self.saved_reply = None
        return self._run(response, saver)

    def continue_reply(self, reply_id: int) -> ReplyStream:
        """Go on with a stopped reply. The result is a new version of it that starts with its text;
        the stopped one stays, one arrow away, as a regenerated reply does."""
        old = self.history.get_message(reply_id)
        if old.role != "assistant":
            raise UserError("Only a reply can be continued.")
        saver = self.history.regenerate(reply_id)
        self._thread_to(old.parent_id)
        self.user_message = None
        if old.thinking:  # the continuation goes on from the answer: the thinking before it stays its own
            saver.append_thinking(old.thinking)
        saver.append(old.content)
        saver.flush()  # the new version shows its start at once, wherever it is opened
        response = self.engine.chat(self.prompt_messages(), self.settings, prefix=old.content)
        self.last_response = response
        self.reply_id = saver.id
        self.saved_reply = None
        return self._run(response, saver, prefix=old.content)

    def regenerate(self, reply_id: int) -> ReplyStream:
        """A new version of a saved reply; the old one stays as a sibling branch."""
        saver = self.history.regenerate(reply_id)
        parent = self.history.get_message(reply_id).parent_id
        self._thread_to(parent)
        self.user_message = None
        return self._stream(saver)

    def edit(self, message_id: int, text: str) -> ReplyStream:
        """A new version of one of the user's messages, and a reply to it."""
        edited = self.history.edit(message_id, text)
        self._thread_to(edited.id)
        self.user_message = edited
        return self._stream(self.history.start_reply(self.conversation_id, parent_id=edited.id))

    def _thread_to(self, leaf_id: int) -> None:
        path = self.history.branch_path(leaf_id)
        self.conversation_id = path[-1].conversation_id
        thread = [m for m in path if m.role != "system"]
        self.messages = [self._from_history(m) for m in thread]
        self.leaf_id = thread[-1].id if thread else None
        self._note_model()

    def _stream(self, saver) -> ReplyStream:
        response = self.engine.chat(self.prompt_messages(), self.settings)
        self.last_response = response
        self.reply_id = saver.id if saver is not None else None
        self.saved_reply = None
        return self._run(response, saver)

    def _run(self, response: Response, saver, prefix: str = "") -> ReplyStream:
        return ReplyStream(self._pieces(response, saver, prefix))

    def _pieces(self, response: Response, saver, prefix: str = "") -> Generator[Piece, None, None]:
        pieces = response.pieces()
        try:
            for piece in pieces:
                if saver is not None:
                    (saver.append_thinking if piece.kind == THINKING else saver.append)(piece.text)
                yield piece
        finally:
            pieces.close()  # if the caller walked away, this stops generation and records stats
            reply = prefix + "".join(response.chunks)
            # The thinking stays with the reply; whether the model sees it again is its template's choice.
            thinking = response.thinking_text().strip()
            self.messages.append({"role": "assistant", "content": reply, **({"thinking": thinking} if thinking else {})})
            if saver is not None:
                stats = response.stats.to_dict() if response.stats else None
                error = (stats or {}).get("error") or response.notice
                self.saved_reply = saver.finish(status_for(response), stats=stats, error=error)
                self.leaf_id = self.saved_reply.id

    def cancel(self) -> None:
        if self.last_response:
            self.last_response.cancel()

    # --- Persistence (a no-op without a store)
    def _ensure_conversation(self) -> None:
        if self.conversation_id is None:
            # Only the overrides its user chose are saved with it (each reply's record keeps the sampling
            # it used); the defaults stay the defaults.
            conv = self.history.create_conversation(model=self._model_name(), system_prompt=self.system_prompt,
                                                    settings=self.conversation_settings)
            self.conversation_id = conv.id
        else:
            self._note_model()

    def _note_model(self) -> None:
        """The conversation remembers the model it last used (each reply's stats name its own)."""
        if self.history is not None and self.conversation_id is not None and self._model_name():
            self.history.update_conversation(self.conversation_id, model=self._model_name())

    def _model_name(self) -> str | None:
        summary = self.engine.summary()
        return summary.name if summary else None


def status_for(response: Response) -> str:
    """The saved status of a finished reply: stopped and error stand out; every other end is complete."""
    reason = response.stats.stop_reason if response.stats else "stopped"
    return {"stopped": "stopped", "error": "error"}.get(reason, "complete")

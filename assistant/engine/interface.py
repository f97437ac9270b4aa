"""What every caller of an engine sees, whatever runs the model.

Two backends sit behind this interface: `LocalEngine` runs llama.cpp in a
supervised child process (the runner), and a remote backend speaks the OpenAI
protocol to another machine. The chat service, the CLI, the window and the API
server only ever hold an `Engine` and the `Response` objects it returns.

A `Response` is lazy, in the manner of simonw/llm: nothing runs until it is
iterated; iterating streams text; however it ends (the model's end of turn, a
limit, a cancel, a crash) it has recorded its own `ResponseStats`.

A reasoning model's reply is a stream of typed pieces: iterating a `Response` yields
the answer's text, as it always did; `pieces()` yields `Piece(kind, text)` with kind
"thinking" or "answer", told apart where the text is produced (the runner, or the
remote backend).
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Generator
from dataclasses import asdict, dataclass, field
from typing import Any

from assistant.engine.settings import GenerationSettings, LoadSettings
from assistant.engine.thinking import ANSWER, THINKING, Piece
from assistant.stats import ResponseStats


@dataclass
class ModelSummary:
    """What is loaded now, as plain data: safe to send between threads and processes."""

    name: str
    path: str
    quant: str | None
    architecture: str | None
    n_params: int | None
    size_bytes: int | None
    n_ctx: int
    n_ctx_train: int | None
    n_threads: int | None
    n_gpu_layers: int
    chat_format: str  # how prompts are rendered: "gguf", "catalogue:gemma", "completion", ...
    has_chat_template: bool
    backend: dict[str, Any] = field(default_factory=dict)  # kind, build, devices (see the stats record)
    memory: dict[str, Any] = field(default_factory=dict)  # weights/kv/compute/rss/vram bytes of the model's process
    kind: str = "local"  # "local" (the runner on this machine) or "remote"
    pid: int | None = None  # the runner's process id, for local models
    load_ms: float | None = None
    is_base: bool = False  # continues text rather than following instructions
    remote: dict[str, Any] | None = None  # for remote models: the server's name, host, software
    spec: str | None = None  # what to pass to load() to load it again (an installed name, or the file's path)
    thinking: str | None = None  # how the model marks its thinking (thinking.FORMATS), None: it does not think
    # Speculative decoding: {"kind": "model"|"lookup", "model", "draft_max", weights/kv/compute bytes}, or
    # {"kind", "model", "error": sentence} when the draft asked for was left out; None without drafting.
    draft: dict[str, Any] | None = None
    # Whether it sees images: True with a projector loaded, False without; None when not known (a remote model).
    vision: bool | None = False
    projector: dict[str, Any] | None = None  # the projector loaded with it: path, weights/compute bytes
    # The KV cache as allocated: type, flash attention used, sliding-window caches, checkpoints (see the stats record)
    kv_cache: dict[str, Any] = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)  # load settings that could not be used as given, and why

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Response(ABC):
    """One reply. Iterate for the answer's text, or `pieces()` for thinking and answer apart;
    afterwards `.stats` holds its record.

    Iterating a second time replays the text already produced. `cancel()` may be
    called from any thread; the reply then ends with stop reason `stopped`.
    """

    def __init__(self, messages: list[dict] | None, settings: GenerationSettings, prompt: str | None = None,
                 prefix: str | None = None):
        self.messages = messages
        self.prompt = prompt  # text-completion mode: the raw text the reply continues
        self.prefix = prefix  # a stopped reply this one continues: the model goes on from its text
        self.settings = settings
        self.stats: ResponseStats | None = None
        self.chunks: list[str] = []  # the answer, as it streamed
        self.thinking_chunks: list[str] = []  # the thinking, as it streamed
        self._pieces: list[Piece] = []
        self.notice: str | None = None  # a sentence for the user beside the reply (e.g. "the runner was ended")
        self._cancel = threading.Event()
        self._started = False

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    @property
    def done(self) -> bool:
        return self.stats is not None

    def text(self) -> str:
        for _ in self:
            pass
        return "".join(self.chunks)

    def thinking_text(self) -> str:
        """The thinking so far (all of it once the reply is done)."""
        return "".join(self.thinking_chunks)

    def pieces(self) -> Generator[Piece, None, None]:
        """Thinking and answer as they stream, each a `Piece`."""
        if self._started:
            yield from (self._pieces if self.done else ())
            return
        self._started = True
        stream = self._stream()
        try:
            for item in stream:
                piece = item if isinstance(item, Piece) else Piece(ANSWER, item)
                if not piece.text:
                    continue
                self._pieces.append(piece)
                (self.thinking_chunks if piece.kind == THINKING else self.chunks).append(piece.text)
                yield piece
        finally:
            stream.close()  # a caller that walks away stops the reply, which still records its stats

    def __iter__(self) -> Generator[str, None, None]:
        pieces = self.pieces()
        try:
            for piece in pieces:
                if piece.kind == ANSWER:
                    yield piece.text
        finally:
            pieces.close()

    @abstractmethod
    def _stream(self) -> Generator[str | Piece, None, None]:
        """Produce the text (a plain str is answer text); must set `self.stats` before it returns, however it ends."""


class Engine(ABC):
    """Loads one model at a time and answers through lazy `Response`s."""

    @abstractmethod
    def load(self, spec: Any, settings: LoadSettings | None = None, *, automatic: bool = False) -> ModelSummary:
        """Load (or select) a model by name, path or registry entry.

        `automatic` marks a load the user did not ask for just now (reopening the last
        model at start-up): a model known to have crashed the engine is refused then.
        """

    @abstractmethod
    def unload(self) -> None:
        """Free the model; for a local model its process ends and its memory returns."""

    @abstractmethod
    def summary(self) -> ModelSummary | None:
        """What is loaded, or None."""

    @abstractmethod
    def chat(self, messages: list[dict], settings: GenerationSettings | None = None, *,
             prefix: str | None = None) -> Response:
        """A lazy reply to `messages` ([{role, content}]), rendered with the model's chat template.

        `prefix`: the start of the reply, already written (a stopped reply to continue); the model
        goes on from it and the Response yields only the new text.
        """

    @abstractmethod
    def complete(self, prompt: str, settings: GenerationSettings | None = None) -> Response:
        """A lazy continuation of `prompt` as plain text, no chat template (base models)."""

    @abstractmethod
    def count_tokens(self, messages: list[dict]) -> int:
        """Tokens the conversation takes as a prompt (the live context meter)."""

    @abstractmethod
    def cancel(self) -> None:
        """Stop the reply being generated, from any thread."""

    def close(self) -> None:
        """Release everything (the runner process, connections). The engine stays usable: a later load reopens."""
        self.unload()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

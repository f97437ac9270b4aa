"""One Engine for the app that is either backend: a local model, or `MODEL@REMOTE` on a remote server.

The chat service holds one engine. `EngineRouter` is it: a spec naming a known
remote (`qwen2.5:7b@gpu-box`) selects that server's model through a
`RemoteEngine`; anything else loads locally through the runner. Switching to a
remote model ends the local runner, so its memory returns.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from assistant import remotes
from assistant.engine.interface import Engine, ModelSummary, Response
from assistant.engine.local import LocalEngine
from assistant.engine.settings import GenerationSettings, LoadSettings

if TYPE_CHECKING:
    from assistant.engine.remote import RemoteEngine


class EngineRouter(Engine):
    def __init__(self, local: Engine | None = None) -> None:
        self.local = local or LocalEngine()
        self.active: Engine = self.local

    def _remote_engine(self, remote: remotes.Remote) -> RemoteEngine:
        from assistant.engine.remote import RemoteEngine  # httpx: only once a remote model is used (start-up)

        return RemoteEngine(remote, remotes.get_key(remote.name))

    def load(self, spec: Any, settings: LoadSettings | None = None, *, automatic: bool = False) -> ModelSummary:
        target = remotes.split_spec(spec) if isinstance(spec, str) else None
        if target is None:
            summary = self.local.load(spec, settings, automatic=automatic)
            self.active = self.local
            return summary
        model, remote = target
        engine = self._remote_engine(remote)
        summary = engine.load(model, settings, automatic=automatic)  # raises before anything changes
        if self.active is self.local:
            self.local.unload()
        self.active = engine
        return summary

    def unload(self) -> None:
        self.active.unload()
        self.active = self.local

    def summary(self) -> ModelSummary | None:
        return self.active.summary()

    def chat(self, messages: list[dict], settings: GenerationSettings | None = None, *,
             prefix: str | None = None) -> Response:
        return self.active.chat(messages, settings, prefix=prefix)

    def complete(self, prompt: str, settings: GenerationSettings | None = None) -> Response:
        return self.active.complete(prompt, settings)

    def count_tokens(self, messages: list[dict]) -> int:
        return self.active.count_tokens(messages)

    def cancel(self) -> None:
        self.active.cancel()
        if self.active is not self.local:
            self.local.cancel()  # a load in progress

    def close(self) -> None:
        self.active.close()
        if self.active is not self.local:
            self.local.close()

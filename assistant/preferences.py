"""The user's preferences: defaults for every conversation, and how the app looks.

Defaults are written in one place: the sampling figures come from
`GenerationSettings`, the context and threads from `LoadSettings`, so the CLI's
options, the window's settings and a fresh install all agree. Preferences live in
the data directory (`settings.json`, see common.settings_store).
"""

from __future__ import annotations

from typing import Any

from assistant.engine.settings import ContextPolicy, GenerationSettings, LoadSettings
from common.settings_store import SettingsStore

# The sampling keys a conversation may override; everything else is app-wide.
SAMPLING_KEYS = ("temperature", "top_p", "top_k", "min_p", "repeat_penalty", "seed", "max_tokens",
                 "stop_on_repetition", "context_policy")
PREFERENCES_KEY = "defaults"


def default_preferences() -> dict[str, Any]:
    g, load = GenerationSettings(), LoadSettings()
    sampling = {k: getattr(g, k) for k in SAMPLING_KEYS}
    sampling["context_policy"] = g.context_policy.value
    return {
        "system_prompt": "", **sampling,
        "n_ctx": load.n_ctx or 0,  # 0: the model's own, at most 4096
        "n_threads": load.n_threads or 0,  # 0: the physical cores
        "n_gpu_layers": load.n_gpu_layers, "chat_template": "",
        # Speculative decoding: "auto" drafts with a smaller installed size of the model's family when the
        # catalogue pairs one (drafting pauses itself when it does not pay), "lookup" or "off".
        "draft": "auto",
        "theme": "system", "stats_line": "always",
    }


def load_preferences(store: SettingsStore) -> dict[str, Any]:
    defaults = default_preferences()
    saved = store.get(PREFERENCES_KEY) or {}
    return {**defaults, **{k: v for k, v in saved.items() if k in defaults}} if isinstance(saved, dict) else defaults


def save_preferences(store: SettingsStore, preferences: dict[str, Any]) -> None:
    store.set(PREFERENCES_KEY, {k: v for k, v in preferences.items() if k in default_preferences()})


def generation_settings(preferences: dict[str, Any], overrides: dict[str, Any] | None = None) -> GenerationSettings:
    """A conversation's sampling: the defaults, with the conversation's own overrides on top."""
    merged = {**{k: preferences.get(k) for k in SAMPLING_KEYS},
              **{k: v for k, v in (overrides or {}).items() if k in SAMPLING_KEYS}}
    base = GenerationSettings()
    return GenerationSettings(
        temperature=float(merged["temperature"] if merged["temperature"] is not None else base.temperature),
        top_p=float(merged["top_p"] if merged["top_p"] is not None else base.top_p),
        top_k=int(merged["top_k"] if merged["top_k"] is not None else base.top_k),
        min_p=float(merged["min_p"] if merged["min_p"] is not None else base.min_p),
        repeat_penalty=float(merged["repeat_penalty"] if merged["repeat_penalty"] is not None else base.repeat_penalty),
        seed=merged["seed"] if merged["seed"] not in ("", None) else None,
        max_tokens=merged["max_tokens"] or None,
        stop_on_repetition=bool(merged["stop_on_repetition"]) if merged["stop_on_repetition"] is not None else True,
        context_policy=ContextPolicy(merged["context_policy"] or base.context_policy.value),
    )


def load_settings(preferences: dict[str, Any]) -> LoadSettings:
    return LoadSettings(n_ctx=preferences.get("n_ctx") or None, n_threads=preferences.get("n_threads") or None,
                        n_gpu_layers=preferences.get("n_gpu_layers"),
                        chat_template=preferences.get("chat_template") or None,
                        draft=preferences.get("draft") or None)

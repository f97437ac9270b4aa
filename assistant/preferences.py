"""The user's preferences: defaults for every conversation, and how the app looks.

Defaults are written in one place: the sampling figures come from
`GenerationSettings`, the context and threads from `LoadSettings`, so the CLI's
options, the window's settings and a fresh install all agree. Preferences live in
the data directory (`settings.json`, see common.settings_store).
"""

from __future__ import annotations

from typing import Any

import logging

from assistant.engine.settings import ContextPolicy, GenerationSettings, LoadSettings
from common.settings_store import Setting, SettingsStore

log = logging.getLogger(__name__)

# The sampling keys a conversation may override; everything else is app-wide.
SAMPLING_KEYS = ("temperature", "top_p", "top_k", "min_p", "repeat_penalty", "seed", "max_tokens",
                 "stop_on_repetition", "context_policy")
PREFERENCES_KEY = "defaults"
MAX_TEMPLATE_CHARS = 1 << 20  # the same bound as a --chat-template file: real templates are a few kB

# What each preference may hold, checked when it is read (settings.json may be edited by hand, and a
# conversation's own settings may come from an imported file): anything else is replaced by the default.
RULES: dict[str, Setting] = {
    "system_prompt": Setting(str, optional=True, max_chars=1 << 20),
    "temperature": Setting(float, 0.0, 100.0),
    "top_p": Setting(float, 0.0, 1.0),
    "top_k": Setting(int, 0, 1_000_000),
    "min_p": Setting(float, 0.0, 1.0),
    "repeat_penalty": Setting(float, 0.0, 100.0),
    "seed": Setting(int, 0, 2**32 - 1, optional=True),  # llama.cpp's seed is 32 bits
    "max_tokens": Setting(int, 0, 10_000_000, optional=True),
    "stop_on_repetition": Setting(bool),
    "context_policy": Setting(str, choices=tuple(p.value for p in ContextPolicy)),
    "n_ctx": Setting(int, 0, 1 << 24, optional=True),
    "n_threads": Setting(int, 0, 4096, optional=True),
    "n_gpu_layers": Setting(int, -1, 1 << 20, optional=True),
    "chat_template": Setting(str, optional=True, max_chars=MAX_TEMPLATE_CHARS),
    "theme": Setting(str, choices=("system", "light", "dark")),
    "stats_line": Setting(str, choices=("always", "hover", "never")),
    "reply_deadline_s": Setting(float, 0.0, 7 * 24 * 3600.0),  # 0: no overall deadline
}


def default_preferences() -> dict[str, Any]:
    g, load = GenerationSettings(), LoadSettings()
    sampling = {k: getattr(g, k) for k in SAMPLING_KEYS}
    sampling["context_policy"] = g.context_policy.value
    return {
        "system_prompt": "", **sampling,
        "n_ctx": load.n_ctx or 0,  # 0: the model's own, at most 4096
        "n_threads": load.n_threads or 0,  # 0: the physical cores
        "n_gpu_layers": load.n_gpu_layers, "chat_template": "",
        "theme": "system", "stats_line": "always",
        "reply_deadline_s": g.reply_deadline_s or 0.0,  # remote replies: the most seconds one may take
    }


def load_preferences(store: SettingsStore) -> dict[str, Any]:
    """The saved preferences over their defaults, each checked: a wrong type or an impossible value is
    replaced by the default, with a notice naming the file (SettingsStore.take_notices)."""
    defaults = default_preferences()
    saved = store.get(PREFERENCES_KEY) or {}
    if not isinstance(saved, dict):
        return defaults
    known = {k: v for k, v in saved.items() if k in defaults}
    return {**defaults, **store.checked(known, RULES, defaults, PREFERENCES_KEY)}


def checked_overrides(overrides: dict[str, Any] | None) -> dict[str, Any]:
    """A conversation's own sampling settings, without the values no model could use (logged, left out)."""
    clean = {}
    for key, value in (overrides or {}).items():
        if key not in SAMPLING_KEYS:
            continue
        ok, normalized = RULES[key].normalized(value)
        if ok:
            clean[key] = normalized
        else:
            log.warning("a conversation's setting %s is %.60r, not %s; the default is used", key, value,
                        RULES[key].describe())
    return clean


def save_preferences(store: SettingsStore, preferences: dict[str, Any]) -> None:
    store.set(PREFERENCES_KEY, {k: v for k, v in preferences.items() if k in default_preferences()})


def generation_settings(preferences: dict[str, Any], overrides: dict[str, Any] | None = None) -> GenerationSettings:
    """A conversation's sampling: the defaults, with the conversation's own overrides on top."""
    merged = {**{k: preferences.get(k) for k in SAMPLING_KEYS}, **checked_overrides(overrides)}
    base = GenerationSettings()
    deadline = preferences.get("reply_deadline_s")
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
        reply_deadline_s=base.reply_deadline_s if deadline is None else float(deadline),
    )


def load_settings(preferences: dict[str, Any]) -> LoadSettings:
    return LoadSettings(n_ctx=preferences.get("n_ctx") or None, n_threads=preferences.get("n_threads") or None,
                        n_gpu_layers=preferences.get("n_gpu_layers"),
                        chat_template=preferences.get("chat_template") or None)

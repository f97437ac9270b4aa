"""The user's preferences: defaults for every conversation, and how the app looks.

Defaults are written in one place: the sampling figures come from
`GenerationSettings`, the context, threads and KV cache from `LoadSettings`, so the
CLI's options, the window's settings and a fresh install all agree. Preferences live
in the data directory (`settings.json`, see common.settings_store).

A model may keep its own KV cache type and flash attention setting
(`MODEL_LOAD_KEY`: {model name: {"kv_cache_type", "flash_attn"}}), which win over the
defaults whenever that model is loaded (`load_settings(preferences, model)`).
"""

from __future__ import annotations

from typing import Any

import logging

from assistant.engine.settings import FLASH_ATTN_MODES, KV_CACHE_TYPES, ContextPolicy, GenerationSettings, LoadSettings
from assistant.engine.thinking import FORMATS as THINKING_FORMATS
from assistant.engine.thinking import NONE as THINKING_NONE
from assistant.engine.thinking_controls import EFFORTS, THINKING_CHOICES
from common.settings_store import Setting, SettingsStore

log = logging.getLogger(__name__)

# The sampling keys a conversation may override; everything else is app-wide.
SAMPLING_KEYS = ("temperature", "top_p", "top_k", "min_p", "repeat_penalty", "seed", "max_tokens",
                 "stop_on_repetition", "context_policy")
# A reasoning model's thinking: defaults in the settings, overridable per conversation ("This chat").
THINKING_KEYS = ("thinking", "thinking_effort", "thinking_budget", "thinking_format")
PREFERENCES_KEY = "defaults"
# Load settings a model may keep for itself, and where: preferences[MODEL_LOAD_KEY][model name].
PER_MODEL_LOAD_KEYS = ("kv_cache_type", "flash_attn")
MODEL_LOAD_KEY = "model_load_settings"
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
    # A reasoning model's thinking (None: the model's own default, no budget, the detected format).
    "thinking": Setting(str, choices=THINKING_CHOICES, optional=True),
    "thinking_effort": Setting(str, choices=EFFORTS, optional=True),
    "thinking_budget": Setting(int, 0, 10_000_000, optional=True),
    "thinking_format": Setting(str, choices=(*THINKING_FORMATS, THINKING_NONE), optional=True),
    "draft": Setting(str, choices=("auto", "lookup", "off")),  # speculative decoding (the window's choices)
    "kv_cache_type": Setting(str, choices=KV_CACHE_TYPES),
    "flash_attn": Setting(str, choices=FLASH_ATTN_MODES),
}


def default_preferences() -> dict[str, Any]:
    g, load = GenerationSettings(), LoadSettings()
    sampling = {k: getattr(g, k) for k in SAMPLING_KEYS}
    sampling["context_policy"] = g.context_policy.value
    return {
        "system_prompt": "", **sampling, **{k: getattr(g, k) for k in THINKING_KEYS},
        "n_ctx": load.n_ctx or 0,  # 0: the model's own, at most 4096
        "n_threads": load.n_threads or 0,  # 0: the physical cores
        "n_gpu_layers": load.n_gpu_layers, "chat_template": "",
        # Speculative decoding: "auto" drafts with a smaller installed size of the model's family when the
        # catalogue pairs one (drafting pauses itself when it does not pay), "lookup" or "off".
        "draft": "auto",
        "kv_cache_type": load.kv_cache_type, "flash_attn": load.flash_attn, MODEL_LOAD_KEY: {},
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
        if key not in SAMPLING_KEYS and key not in THINKING_KEYS:
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
    merged = {**{k: preferences.get(k) for k in SAMPLING_KEYS + THINKING_KEYS}, **checked_overrides(overrides)}
    base = GenerationSettings()
    deadline = preferences.get("reply_deadline_s")
    budget = merged.get("thinking_budget")
    return GenerationSettings(
        thinking=merged.get("thinking") or None, thinking_effort=merged.get("thinking_effort") or None,
        thinking_budget=int(budget) if isinstance(budget, (int, float)) and not isinstance(budget, bool)
        and budget >= 0 else None,
        thinking_format=merged.get("thinking_format") or None,
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


def model_load_settings(preferences: dict[str, Any], model: str | None) -> dict[str, Any]:
    """The load settings `model` keeps for itself ({} when none, or when the saved entry is not usable)."""
    saved = preferences.get(MODEL_LOAD_KEY)
    own = saved.get(model) if isinstance(saved, dict) and isinstance(model, str) else None
    if not isinstance(own, dict):
        return {}
    kept = {}
    for key in PER_MODEL_LOAD_KEYS:
        if key in own:
            ok, value = RULES[key].normalized(own[key])
            if ok:
                kept[key] = value
            else:  # an edited settings.json: the defaults' value is used instead
                log.warning("%s's saved %s is %.60r, not %s; the default is used", model, key, own[key],
                            RULES[key].describe())
    return kept


def set_model_load_settings(store: SettingsStore, model: str, values: dict[str, Any] | None) -> dict[str, Any]:
    """Keep `values` (cache type, flash attention) as `model`'s own; None or {} forgets them. The new preferences."""
    preferences = load_preferences(store)
    saved = preferences.get(MODEL_LOAD_KEY)
    per_model = dict(saved) if isinstance(saved, dict) else {}
    own = {k: v for k, v in (values or {}).items() if k in PER_MODEL_LOAD_KEYS and v is not None}
    if own:
        per_model[model] = own
    else:
        per_model.pop(model, None)
    preferences[MODEL_LOAD_KEY] = per_model
    save_preferences(store, preferences)
    return preferences


def load_settings(preferences: dict[str, Any], model: str | None = None) -> LoadSettings:
    """How to load a model: the defaults, with `model`'s own cache settings on top. A cache value that is not
    one of the choices (an edited settings.json) is passed on as it is: the engine falls back to the default
    and says so (`LoadSettings.checked`), so the user learns why their choice did not apply."""
    base = LoadSettings()
    cache = {"kv_cache_type": preferences.get("kv_cache_type") or base.kv_cache_type,
             "flash_attn": preferences.get("flash_attn") or base.flash_attn,
             **model_load_settings(preferences, model)}
    return LoadSettings(n_ctx=preferences.get("n_ctx") or None, n_threads=preferences.get("n_threads") or None,
                        n_gpu_layers=preferences.get("n_gpu_layers"),
                        chat_template=preferences.get("chat_template") or None,
                        draft=preferences.get("draft") or None, **cache)

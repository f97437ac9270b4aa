"""`assistant bench --draft`: the same prompts with and without drafting, and the speed-up.

The model is loaded once with its draft; each prompt runs twice, once with the draft
and once without (`GenerationSettings.use_draft`), alternating which goes first so
drift on a shared machine hits both alike. Sampling is greedy, so both runs produce
the same tokens and only the time differs. The figure is the runner's generation
rate (tokens after the first over the time after the first); the draft model's own
prompt evaluation falls inside it, as it does for a user's first reply.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable

from assistant.engine import protocol as P
from assistant.engine.bench_spec import BENCH_SEED
from assistant.engine.local import LocalEngine
from assistant.engine.settings import GenerationSettings
from common.errors import UserError

_PASSAGE = ("The lighthouse keeper climbed the one hundred and twelve stairs every evening at six. He lit the lamp, "
            "wound the clockwork that turned the lens, and wrote the weather in a small blue book: the wind, the "
            "sea, the ships that passed. In winter the ice crept up the rocks and the spray froze on the windows, "
            "and he scraped it away with a knife so the light could reach the sea.")
_CODE = ('def summarize(records, key, limit=10):\n    totals = {}\n    for record in records:\n'
         '        value = record.get(key)\n        if value is None:\n            continue\n'
         '        totals[value] = totals.get(value, 0) + 1\n'
         '    ranked = sorted(totals.items(), key=lambda item: item[1], reverse=True)\n'
         '    return ranked[:limit]\n')

# (name, messages or text to continue): free writing, an edit that quotes its input, and code that is mostly kept.
DRAFT_PROMPTS: list[tuple[str, list[dict] | str]] = [
    ("write", [{"role": "user", "content": "Write a long story about a lighthouse keeper."}]),
    ("edit", [{"role": "user", "content": "Repeat this passage exactly, but say 'guardian' instead of 'keeper':\n\n"
                                          + _PASSAGE}]),
    ("code", [{"role": "user", "content": "Add type hints and a docstring to this function; give the whole "
                                          "function back:\n\n" + _CODE}]),
]


def _settings(n_tokens: int, use_draft: bool, ignore_eos: bool = False) -> GenerationSettings:
    return GenerationSettings(max_tokens=n_tokens, temperature=0.0, seed=BENCH_SEED, stop_on_repetition=False,
                              use_draft=use_draft, ignore_eos=ignore_eos)


def _one(engine: LocalEngine, prompt: list[dict] | str, n_tokens: int, use_draft: bool,
         ignore_eos: bool = False) -> dict:
    engine.call(P.RESET, doing="benchmarking")
    settings = _settings(n_tokens, use_draft, ignore_eos)
    # A string is text to continue (a model without a chat template); a list is a conversation.
    response = engine.complete(prompt, settings) if isinstance(prompt, str) else engine.chat(prompt, settings)
    response.text()
    st = response.stats
    assert st is not None
    if st.stop_reason == "error":
        raise UserError(st.error or "the reply failed")
    return {"tps": st.gen_tps or 0.0, "tokens": st.completion_tokens, "draft": st.draft, "reply": st.reply}


def compare_drafting(engine: LocalEngine, *, n_tokens: int = 256, repeats: int = 1,
                     prompts: list[tuple[str, list[dict] | str]] | None = None,
                     progress: Callable[[str], None] = lambda msg: None,
                     should_stop: Callable[[], bool] = lambda: False, ignore_eos: bool = False) -> dict:
    """Each prompt with and without the loaded model's draft; the speed-up per prompt and overall.
    `ignore_eos`: every reply runs to `n_tokens` (random-weight models end anywhere)."""
    summary = engine.summary()
    if summary is None or not summary.draft or summary.draft.get("error"):
        why = (summary.draft or {}).get("error") if summary else None
        raise UserError(why or "The model was loaded without a draft; use --draft MODEL or --draft lookup.")
    rows = []
    for name, messages in prompts or DRAFT_PROMPTS:
        with_tps, without_tps, drafted, accepted, same = [], [], 0, 0, True
        for i in range(max(1, repeats)):
            if should_stop():
                break
            progress(f"{name} ({i + 1}/{repeats})")
            order = (True, False) if i % 2 == 0 else (False, True)
            runs = {use: _one(engine, messages, n_tokens, use, ignore_eos) for use in order}
            with_tps.append(runs[True]["tps"])
            without_tps.append(runs[False]["tps"])
            d = runs[True]["draft"] or {}
            drafted += d.get("drafted") or 0
            accepted += d.get("accepted") or 0
            same = same and runs[True]["reply"] == runs[False]["reply"]
        if not with_tps:
            break
        w, wo = statistics.median(with_tps), statistics.median(without_tps)
        rows.append({"prompt": name, "with_tps": round(w, 2), "without_tps": round(wo, 2),
                     "speedup": round(w / wo, 3) if wo else None, "drafted": drafted, "accepted": accepted,
                     "acceptance": round(accepted / drafted, 3) if drafted else None, "same_reply": same,
                     "runs": len(with_tps)})
    speedups = [r["speedup"] for r in rows if r["speedup"]]
    return {"model": summary.name, "draft": summary.draft, "tokens": n_tokens, "threads": summary.n_threads,
            "backend": summary.backend.get("kind"), "prompts": rows,
            "speedup": round(statistics.median(speedups), 3) if speedups else None}

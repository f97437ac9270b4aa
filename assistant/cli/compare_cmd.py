"""`assistant compare`: one prompt (or a prompt set) on several models, side by side, with verdicts.

    assistant compare -m starter -m gemma3-270m-base "Why is the sky blue?"
    assistant compare --set daily -m starter -m llama3.2-1b
    assistant compare sets add daily --prompt "Summarise: ..." --prompt "Write a regex for ..."
    assistant compare list | show ID | search QUERY | again ID -m C -m D | summary
    assistant compare verdict ID MODEL good|not-good|none     assistant compare best ID MODEL

The first word decides: one of the actions above, or else the words are the prompt
(`--prompt TEXT` compares a prompt that is exactly one of those words).
"""

from __future__ import annotations

import argparse
import queue
import sys
from typing import Any

from assistant.cli.common import (
    SEARCH_MARKS,
    add_cache_options,
    add_generation_options,
    cache_settings,
    ctrl_c_cancels,
    dim,
    generation_settings,
    positive_int,
    terminal_snippet,
)
from assistant.prompt_sets import PromptSetService
from common.errors import UserError
from common.terminal import json_text, safe_text

ACTIONS = ("sets", "list", "show", "search", "again", "verdict", "best", "summary")
VERDICT_WORDS = {"good": "good", "good-enough": "good", "yes": "good", "not-good": "not_good", "not_good": "not_good",
                 "bad": "not_good", "no": "not_good", "none": None, "clear": None}



def add_parser(sub) -> None:
    p = sub.add_parser(
        "compare", help="run one prompt (or a prompt set) on several models, side by side",
        description="The same prompt, system prompt, sampling and seed on each model in turn, streamed, then the "
                    "figures side by side. Comparisons are saved with the history; mark each answer good enough or "
                    "not, and `compare summary` sums them up per pair of models.",
        epilog="actions (the first word): sets add NAME --prompt P [--prompt P …] | sets list | sets show NAME | "
               "sets rm NAME; list; show ID; search QUERY; again ID -m C [-m D …]; verdict ID MODEL good|not-good|none; "
               "best ID MODEL; summary. Otherwise the words are the prompt.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("words", nargs="*", metavar="PROMPT", help="the prompt (or an action and its arguments)")
    p.add_argument("-m", "--model", action="append", default=[], dest="models", metavar="MODEL",
                   help="a model to compare, once for each (at least two): an installed name, a .gguf path or "
                        "MODEL@REMOTE")
    p.add_argument("--set", dest="prompt_set", metavar="NAME", help="run this saved prompt set as a batch")
    p.add_argument("--prompt", action="append", default=[], dest="prompts", metavar="TEXT",
                   help="a prompt (for `sets add`, once per prompt)")
    p.add_argument("-s", "--system", help="system prompt (for every model)")
    p.add_argument("--json", action="store_true", help="print a list with each model's full record when done")
    p.add_argument("--no-save", action="store_true", help="do not keep this comparison in the history")
    p.add_argument("--replace", action="store_true", help="`sets add`: replace a set of the same name")
    p.add_argument("--limit", type=positive_int, default=30, help="`list`, `search`: how many (default 30)")
    p.add_argument("-t", "--threads", type=positive_int, help="CPU threads (default: the physical cores)")
    p.add_argument("-c", "--ctx", type=positive_int, help="context length (default: each model's, at most 4096)")
    p.add_argument("--gpu-layers", type=int, help="layers to offload to the GPU (default: all, when the build can)")
    add_cache_options(p)
    add_generation_options(p)
    p.set_defaults(func=run)


# --- Dispatch -------------------------------------------------------------------------------------------------


def run(args) -> int:
    words = list(args.words)
    if words and words[0] in ACTIONS and not args.prompt_set:
        return _action(words[0], words[1:], args)
    if args.prompt_set:
        if words or args.prompts:
            raise UserError("--set runs the set's own prompts; leave out the prompt.")
        return _compare(args, prompts=None)
    prompts = args.prompts or ([" ".join(words)] if words else [])
    if len(prompts) > 1:
        raise UserError("Compare one prompt at a time, or save them as a prompt set (`compare sets add`).")
    if not prompts or not prompts[0].strip():
        raise UserError("Compare needs a prompt: assistant compare -m A -m B \"PROMPT\".")
    return _compare(args, prompts=prompts)


def _open_history():
    from assistant.history import HistoryStore

    store = HistoryStore.open()
    for warning in store.warnings:
        print(dim(safe_text(warning)), file=sys.stderr)
    return store


def _load_settings(args):
    from assistant.engine import LoadSettings

    return LoadSettings(n_ctx=args.ctx, n_threads=args.threads, n_gpu_layers=args.gpu_layers, **cache_settings(args))


# --- Running a comparison ---------------------------------------------------------------------------------------


def _compare(args, prompts: list[str] | None, rerun_of: Any = None) -> int:
    from assistant.chat_service import ChatService
    from assistant.compare import (
        CompareRequest,
        CompareService,
        check_models,
        check_request,
    )
    from assistant.engine import EngineRouter

    history = None if args.no_save and not args.prompt_set and rerun_of is None else _open_history()
    try:
        settings = generation_settings(args)
        system = args.system
        prompt_set = None
        if args.prompt_set:
            assert history is not None  # opened for --set above
            saved_set = PromptSetService(history).get(args.prompt_set)
            prompts, prompt_set = saved_set.prompts, saved_set.name
            system = system if system is not None else saved_set.system_prompt
        if rerun_of is not None:
            from assistant.engine import GenerationSettings

            prompts, system = [rerun_of.prompt], rerun_of.system_prompt
            settings = GenerationSettings.from_dict(rerun_of.settings) if rerun_of.settings else settings
            prompt_set = rerun_of.prompt_set
        request = check_request(CompareRequest(
            prompts=prompts or [], models=args.models, system_prompt=system, settings=settings,
            load_settings=_load_settings(args), save=not args.no_save, prompt_set=prompt_set,
            rerun_of=rerun_of.uid if rerun_of is not None else None))
        check_models(request.models)
        service = ChatService(EngineRouter(), history)
        try:
            result = _stream(CompareService(service, history), request, quiet=args.json)
        finally:
            service.close()
    finally:
        if history is not None:
            history.close()
    if args.json:
        print(json_text(_records(result)))
    else:
        _report(result)
    failed = any(a is not None and not a.ok for row in result.answers for a in row)
    return 130 if result.cancelled else (1 if failed else 0)


def _stream(service, request, quiet: bool):
    """Run it, printing each model's reply as it streams (to stdout), progress to stderr."""
    from assistant.compare import (
        AnswerDone,
        AnswerLoading,
        AnswerStarted,
        AnswerText,
        RunDone,
        RunFailed,
    )

    events: queue.Queue = queue.Queue()
    run = service.start(request, listener=events.put)
    n_models, n_prompts = len(request.models), len(request.prompts)
    with ctrl_c_cancels(run.cancel):
        while True:
            try:
                event = events.get(timeout=0.2)  # a timeout, so Ctrl-C is handled promptly
            except queue.Empty:
                continue
            if isinstance(event, RunDone):
                return event.result
            if isinstance(event, RunFailed):
                raise UserError(event.sentence)
            if quiet:
                continue
            if isinstance(event, AnswerLoading):
                print(dim(f"Loading {safe_text(event.model)}…"), file=sys.stderr, flush=True)
            elif isinstance(event, AnswerStarted):
                where = f"model {event.model_index + 1}/{n_models}"
                if n_prompts > 1:
                    where += f" · prompt {event.prompt_index + 1}/{n_prompts}"
                print(_rule(f"{safe_text(event.model)} ({where})"), flush=True)
            elif isinstance(event, AnswerText) and event.kind != "thinking":  # thinking: counted in the table
                sys.stdout.write(safe_text(event.text, keep_newlines=True))
                sys.stdout.flush()
            elif isinstance(event, AnswerDone):
                answer = event.answer
                if answer is None:
                    continue
                if answer.status == "error" and not answer.text:
                    print(_rule(f"{safe_text(event.model)}"), flush=True)
                print()
                if answer.error:
                    print(f"error: {safe_text(answer.error)}", file=sys.stderr)


def _rule(title: str, width: int = 72) -> str:
    head = f"── {title} "
    return dim(head + "─" * max(3, width - len(head)), sys.stdout)


def _records(result) -> list[dict]:
    """--json: each model's full record (one per prompt for a set)."""
    out = []
    for p, row in enumerate(result.answers):
        for m, answer in enumerate(row):
            if answer is None:
                continue
            out.append({"prompt": result.prompts[p], "model": result.models[m], "comparison_id": result.comparison_ids[p],
                        "answer_id": answer.answer_id, "text": answer.text, "status": answer.status,
                        "error": answer.error, "stats": answer.stats or None})
    return out


def _report(result) -> None:
    from assistant.compare_summary import (
        BUSY_NOTE,
        PEAK_RAM_NOTE,
        SUMMARY_HEADERS,
        cells_of_result,
        display_name,
        figures,
        summarize_models,
    )

    print()
    if len(result.prompts) == 1:
        answers = result.answers[0]
        names = [display_name(m, a.stats if a else None) for m, a in zip(result.models, answers, strict=True)]
        _figures_table(names, [a.stats if a else None for a in answers])
    else:
        rows = summarize_models(cells_of_result(result), result.models)
        _print_table(SUMMARY_HEADERS, [r.cells() for r in rows])
    if any(figures(a.stats)["cpu_busy"] for row in result.answers for a in row if a is not None):
        print(dim(BUSY_NOTE, sys.stdout))
    print(dim(PEAK_RAM_NOTE, sys.stdout))
    print(dim(f"seed {result.settings.seed} · the same prompt, system prompt and sampling for every model", sys.stdout))
    if result.save_error:
        print(f"warning: not saved: {safe_text(result.save_error)}", file=sys.stderr)
    saved = [c for c in result.comparison_ids if c is not None]
    if len(saved) == 1:
        print(dim(f"Saved as comparison {saved[0]}. Mark the answers: assistant compare verdict {saved[0]} MODEL "
                  f"good|not-good (or `best {saved[0]} MODEL`).", sys.stdout))
    elif saved:
        print(dim(f"Saved as comparisons {saved[0]}–{saved[-1]}; `assistant compare show ID` and "
                  "`compare verdict ID MODEL good|not-good` review them.", sys.stdout))
    if result.cancelled:
        print(dim("Stopped: what finished is kept.", sys.stdout))


def _figures_table(names: list[str], stats: list[dict | None]) -> None:
    from assistant.compare_summary import figure_table

    _print_table([""] + names, [[label, *cells] for label, cells in figure_table(stats)])


def _print_table(headers: list[str], rows: list[list[str]]) -> None:
    headers = [safe_text(h) for h in headers]
    rows = [[safe_text(c) for c in row] for row in rows]
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


# --- Actions --------------------------------------------------------------------------------------------------


def _action(name: str, rest: list[str], args) -> int:
    if name == "sets":
        return _sets(rest, args)
    if name == "summary":
        return _summary(args)
    if name == "list":
        return _list(args)
    if name == "search":
        if not rest:
            raise UserError("compare search needs something to find.")
        return _search(" ".join(rest), args)
    if not rest:
        raise UserError(f"compare {name} needs a comparison's number; `assistant compare list` shows them.")
    cid = _number(rest[0], "comparison")
    if name == "show":
        return _show(cid)
    if name == "again":
        if len(rest) > 1:
            raise UserError("Name the models with -m: assistant compare again ID -m C -m D.")
        with _open_history() as store:
            saved = store.get_comparison(cid)
        return _compare(args, prompts=None, rerun_of=saved)
    if name == "verdict":
        if len(rest) != 3 or rest[2].lower() not in VERDICT_WORDS:
            raise UserError("Usage: assistant compare verdict ID MODEL good|not-good|none.")
        return _verdict(cid, rest[1], VERDICT_WORDS[rest[2].lower()])
    if name == "best":
        if len(rest) != 2:
            raise UserError("Usage: assistant compare best ID MODEL (or `none` to clear the pick).")
        return _best(cid, rest[1])
    raise UserError(f"Unknown action {name!r}.")


def _number(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise UserError(f"{safe_text(text)!r} is not a {what} number; `assistant compare list` shows them.") from None


def _answer_of(comparison, model: str):
    """An answer by its model's name as compared, or by its column number (1, 2, …)."""
    for a in comparison.answers:
        if a.model == model:
            return a
    if model.isdigit() and 1 <= int(model) <= len(comparison.answers):
        return comparison.answers[int(model) - 1]
    names = ", ".join(a.model for a in comparison.answers) or "none"
    raise UserError(f"Comparison {comparison.id} has no answer from {safe_text(model)!r}; its models: "
                    f"{safe_text(names)}.")


def _verdict(cid: int, model: str, verdict: str | None) -> int:
    with _open_history() as store:
        answer = _answer_of(store.get_comparison(cid), model)
        store.set_verdict(answer.id, verdict)
    said = {"good": "good enough", "not_good": "not good enough", None: "not judged"}[verdict]
    print(f"Comparison {cid}: {safe_text(answer.model)} marked {said}.")
    return 0


def _best(cid: int, model: str) -> int:
    with _open_history() as store:
        if model.lower() in ("none", "clear"):
            store.set_best(cid, None)
            print(f"Comparison {cid}: no best answer picked.")
            return 0
        answer = _answer_of(store.get_comparison(cid), model)
        store.set_best(cid, answer.id)
    print(f"Comparison {cid}: {safe_text(answer.model)} picked as the best (and good enough).")
    return 0


def _verdict_word(answer) -> str:
    if answer.best:
        return "best"
    return {"good": "good enough", "not_good": "not good enough"}.get(answer.verdict or "", "not judged")


def _list(args) -> int:
    with _open_history() as store:
        comparisons = store.list_comparisons(limit=args.limit)
        total = store.count_comparisons()
    if not comparisons:
        print("No saved comparisons yet; `assistant compare -m A -m B PROMPT` makes one.")
        return 0
    for c in comparisons:
        when = c.created_at[:16].replace("T", " ")
        models = ", ".join(f"{a.model} ({_verdict_word(a)})" for a in c.answers)
        where = f" [set {c.prompt_set}]" if c.prompt_set else ""
        print(f"{c.id:>4}  {safe_text(when)}  {safe_text(c.title)}{safe_text(where)}")
        print(f"      {safe_text(models)}")
    if total > len(comparisons):
        print(f"({total - len(comparisons)} older; --limit shows more)")
    return 0


def _show(cid: int) -> int:
    from assistant.compare_summary import display_name

    with _open_history() as store:
        c = store.get_comparison(cid)
    print(f"Comparison {c.id} · {safe_text(c.created_at[:16].replace('T', ' '))}"
          + (f" · set {safe_text(c.prompt_set)}" if c.prompt_set else ""))
    if c.system_prompt:
        print(f"System prompt: {safe_text(c.system_prompt, keep_newlines=True)}")
    print(f"Prompt: {safe_text(c.prompt, keep_newlines=True)}")
    for i, a in enumerate(c.answers, 1):
        print(_rule(f"{i}. {safe_text(a.model)} · {_verdict_word(a)}"))
        print(safe_text(a.content, keep_newlines=True) or dim("(no text)", sys.stdout))
        if a.error:
            print(f"error: {safe_text(a.error)}")
    print()
    _figures_table([display_name(a.model, a.stats) for a in c.answers], [a.stats for a in c.answers])
    return 0


def _search(query: str, args) -> int:
    with _open_history() as store:
        hits = store.search_comparisons(query, limit=args.limit, highlight=SEARCH_MARKS)
    if not hits:
        print("No matches.")
        return 0
    for h in hits:
        where = "prompt" if h.answer_id is None else f"answer of {safe_text(h.model)}"
        snippet = terminal_snippet(h.snippet)
        title = " ".join(h.prompt.split())
        print(f"{h.comparison_id:>4}  {safe_text(title[:70])}  — {where}")
        print(f"      {snippet}")
    return 0


def _summary(args) -> int:
    from assistant.compare_summary import pair_summaries

    with _open_history() as store:
        comparisons = store.list_comparisons(limit=None)
    pairs = pair_summaries(comparisons)
    if not pairs:
        print("No comparisons with two answers yet; `assistant compare -m A -m B PROMPT` makes one.")
        return 0
    for s in pairs:
        print(safe_text(s.sentence))
    return 0


def _sets(rest: list[str], args) -> int:
    if not rest:
        raise UserError("Usage: assistant compare sets add NAME --prompt P [--prompt P …] | list | show NAME | rm NAME.")
    verb, names = rest[0], rest[1:]
    with _open_history() as store:
        prompt_sets = PromptSetService(store)  # every write goes through the core's service
        if verb == "list":
            sets = prompt_sets.all()
            if not sets:
                print("No prompt sets yet; `assistant compare sets add NAME --prompt P --prompt Q` makes one.")
            for s in sets:
                n = len(s.prompts)
                print(f"{safe_text(s.name)}  ({n} prompt{'' if n == 1 else 's'})")
            return 0
        if len(names) != 1:
            raise UserError(f"compare sets {safe_text(verb)} needs one set name (quote a name with spaces).")
        name = names[0]
        if verb == "add":
            if not args.prompts:
                raise UserError("Give the set's prompts with --prompt, once for each.")
            saved = prompt_sets.save(name, args.prompts, system_prompt=args.system, replace=args.replace)
            print(f"Saved the prompt set {safe_text(saved.name)!r} ({len(saved.prompts)} prompts); "
                  f"run it with: assistant compare --set {safe_text(saved.name)!r} -m A -m B")
            return 0
        if verb == "show":
            s = prompt_sets.get(name)
            if s.system_prompt:
                print(f"System prompt: {safe_text(s.system_prompt, keep_newlines=True)}")
            for i, prompt in enumerate(s.prompts, 1):
                print(f"{i:>3}. {safe_text(prompt, keep_newlines=True)}")
            return 0
        if verb in ("rm", "remove", "delete"):
            prompt_sets.delete(name)
            print(f"Removed the prompt set {safe_text(name)!r} (its saved comparisons stay).")
            return 0
    raise UserError(f"Unknown sets action {safe_text(verb)!r}: add, list, show or rm.")

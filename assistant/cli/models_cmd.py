"""`assistant models`: list, search, pull, import, rm and fit models.

Names, repo ids, file names and labels come from users, model files and Hub
servers: everything of theirs that reaches the terminal goes through `safe_text`,
so an escape sequence in a name reads as text instead of acting.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
import threading
import time
from typing import Any

from assistant.cli.common import add_cache_options, cache_settings, show_model_list_notices
from assistant.engine.settings import KV_CACHE_TYPES
from common.errors import UserError
from common.formatting import format_byte_rate, format_bytes, format_context, format_params, format_tps
from common.terminal import raw_stream, safe_text


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "models", help="list, search, download, import, remove and size up models",
        description="Installed models, the curated catalogue, and any GGUF model on the Hugging Face Hub.",
    )
    p.set_defaults(func=lambda args: _help(p))
    sub = p.add_subparsers(dest="models_command", metavar="ACTION")

    s = sub.add_parser("list", help="installed models and the catalogue, with fit and speed on this machine")
    s.add_argument("--ctx", type=int, help="context length to size memory for (default: 4096, or the model's if less)")
    s.add_argument("--installed", action="store_true", help="only the installed models")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.set_defaults(func=_with_notices(cmd_list))

    s = sub.add_parser("search", help="GGUF models on the Hugging Face Hub, with their quant files and sizes")
    s.add_argument("query", nargs="+")
    s.add_argument("-n", "--limit", type=int, default=10, help="how many repos (default 10)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=_with_notices(cmd_search))

    s = sub.add_parser(
        "pull", help="download a model (resumes an interrupted download)",
        description="NAME: a catalogue name (llama3.2-1b, llama3.2-1b:Q8_0), owner/repo:QUANT, or "
        "owner/repo/file.gguf. Files go to the Hugging Face cache (HF_HOME); gated repos use HF_TOKEN "
        "or the token `hf auth login` stored.",
    )
    s.add_argument("name")
    s.add_argument("--ctx", type=int, help="context length for the fit check (default 4096)")
    s.add_argument("--force", action="store_true", help="download even if the model will not fit this machine")
    s.set_defaults(func=_with_notices(cmd_pull))

    s = sub.add_parser(
        "downloads", help="paused and unfinished downloads: list, resume or discard them",
        description="A pull stopped with Ctrl-C (or by closing the app) keeps the part downloaded; pulling the "
        "same name again, or `downloads resume NAME`, continues from there.",
    )
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=_with_notices(cmd_downloads))
    actions = s.add_subparsers(dest="downloads_command", metavar="ACTION")
    a = actions.add_parser("resume", help="continue a paused download")
    a.add_argument("name")
    a.set_defaults(func=_with_notices(cmd_downloads_resume))
    a = actions.add_parser("discard", help="delete a paused download's part downloaded")
    a.add_argument("name", nargs="?")
    a.add_argument("--all", action="store_true", help="every paused or unfinished download")
    a.set_defaults(func=_with_notices(cmd_downloads_discard))

    s = sub.add_parser("import", help="register a .gguf file that is already on disk (it is not copied)")
    s.add_argument("path")
    s.add_argument("--name", help="the name to use it by (default: the file name without .gguf)")
    s.add_argument("--projector", metavar="FILE",
                   help="the image projector (mmproj .gguf) it sees images through (default: an mmproj*.gguf beside it)")
    s.set_defaults(func=_with_notices(cmd_import))

    s = sub.add_parser("rm", help="remove a model; a downloaded one's file is deleted")
    s.add_argument("name")
    s.set_defaults(func=_with_notices(cmd_rm))

    s = sub.add_parser(
        "set", help="keep a model's own KV cache type and flash attention setting",
        description="The model then loads with these in chat, serve and the window, "
        "unless a command's own option says otherwise. --reset forgets them.",
    )
    s.add_argument("name")
    add_cache_options(s)
    s.add_argument("--reset", action="store_true", help="forget this model's own settings")
    s.set_defaults(func=_with_notices(cmd_set))

    s = sub.add_parser("fit", help="memory and speed estimate for a model, with its parts (reads only its header)")
    s.add_argument("name")
    s.add_argument("--ctx", type=int, help="context length (default: 4096, or the model's if less)")
    s.add_argument("--draft", metavar="MODEL", help="a draft model loaded beside it (speculative decoding): its "
                                                    "weights, KV cache and compute buffer are added")
    s.add_argument("--kv-cache-type", choices=KV_CACHE_TYPES, default="f16",
                   help="the KV cache's type for K and V (default f16; q8_0 about halves it)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=_with_notices(cmd_fit))


def _help(parser) -> int:
    parser.print_help()
    return 2


def _with_notices(command):
    @functools.wraps(command)
    def run(args) -> int:
        try:
            return command(args)
        finally:
            show_model_list_notices()

    return run


# --- formatting --------------------------------------------------------------------------------


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines)


def _starter_name() -> str:
    from models.starter import STARTER_NAME

    return STARTER_NAME


def _machine_line(n_ctx) -> str:
    from models import fit, speed
    from models.model_table import describe_machine

    return describe_machine(n_ctx, fit.this_machine(), speed.calibration())


# --- commands -------------------------------------------------------------------------------------


def cmd_list(args) -> int:
    from dataclasses import asdict

    from models import library

    from models import catalogue
    from models.labels import params_label

    rows = library.list_models(args.ctx, include_catalogue=not args.installed)
    if args.json:
        # tokens_per_s / speed_measured: a speed measured on a quiet CPU, else the estimate (speed_measured false).
        print(json.dumps([{**asdict(r), "base_label": r.base_label, "catalogue_revised": catalogue.revised()}
                          for r in rows], indent=2))
        return 0
    table = []
    for r in rows:
        name = safe_text(r.name) + (" *" if r.name == _starter_name() else "")
        installed = {"starter": "built in", "hub": "yes", "local": "imported"}.get(r.source, "-") if r.installed else "-"
        size = ("~" if r.size_approx else "") + format_bytes(r.size_bytes)
        # After the last column: a base model says so; what a model can do; an older family.
        note = ", ".join(filter(None, [r.base_label, "thinks" if r.thinking else "",
                                       library.SEES_IMAGES_LABEL if r.sees_images else "",
                                       "older family" if r.older and not r.installed else ""]))
        if r.problem:
            table.append([name, installed, "?", "?", safe_text(r.quant or "?"), "?", "unusable", "-", note])
            continue
        table.append([
            name, installed, size, params_label(r.params, r.active_params), safe_text(r.quant or "?"),
            format_context(r.context_length), r.verdict or "?",
            format_tps(r.tokens_per_s, estimate=not r.speed_measured, unit=False), note,
        ])
    print(_machine_line(args.ctx))
    print()
    print(_table(["NAME", "INSTALLED", "SIZE", "PARAMS", "QUANT", "CTX", "FIT", "TOK/S", ""], table))
    print()
    print("* the default model (built in, instruction-tuned).  ~ estimated for this machine; "
          "a plain figure was measured here.")
    if any(r.is_base for r in rows):
        print("A base model continues the text it is given; for answers to questions, pick an "
              "instruction-tuned model such as the starter.")
    for r in rows:
        if r.problem:
            print(f"{safe_text(r.name)}: {safe_text(r.problem)}")
    if not args.installed:
        revised = catalogue.revised()
        print(f"The catalogue was last revised on {revised}; a pull reads the repo's live file list."
              if revised else "The catalogue does not say when it was revised.")
        print("Pull one with `assistant models pull NAME` (NAME:QUANT for another quant); "
              "`assistant models fit NAME` shows the estimate's parts.")
    _print_remote_models()
    return 0


def _print_remote_models() -> None:
    """The models of each remote server, beside the local ones, named as `-m` takes them (MODEL@REMOTE)."""
    from assistant import remotes
    from assistant.engine.remote import LISTING_SECONDS, RemoteEngine

    servers = remotes.list_remotes()
    if not servers:
        return
    print()
    print("On remote servers (chat with -m MODEL@REMOTE):")

    def ask(remote: remotes.Remote) -> list[str] | UserError:
        try:  # a short wait: a listing must not hang on a dead server (`remote test NAME` waits longer)
            return RemoteEngine(remote, remotes.get_key(remote.name)).list_models(timeout=LISTING_SECONDS)
        except UserError as exc:
            return exc

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(8, len(servers))) as pool:  # all at once: the slowest sets the wait
        answers = list(pool.map(ask, servers))
    for remote, offered in zip(servers, answers):
        if isinstance(offered, UserError):
            print(f"  {remote.name}: {safe_text(offered)}")
            continue
        if not offered:
            print(f"  {remote.name}: offers no models")
        for model in offered:
            print(f"  {safe_text(model)}@{remote.name}  (on {remote.name}, {safe_text(remote.host)})")


def cmd_search(args) -> int:
    from dataclasses import asdict

    from models import hub

    query = " ".join(args.query)
    hits = hub.search(query, limit=args.limit)
    if args.json:
        print(json.dumps([asdict(h) for h in hits], indent=2))
        return 0
    if not hits:
        print(f"No GGUF repos on the Hub match {safe_text(repr(query))}.")
        return 0
    for h in hits:
        flags = " (gated: needs a token and accepted terms)" if h.gated else ""
        downloads = f"{h.downloads:,} downloads" if isinstance(h.downloads, int) else ""
        print(f"{safe_text(h.repo_id)}  {downloads}{flags}")
        if h.error:
            print(f"    {safe_text(h.error)}")
        by_quant: dict[str, list] = {}
        for f in h.files:
            by_quant.setdefault(f.quant or f.path, []).append(f)
        parts = []
        for quant, files in by_quant.items():
            f = files[0]
            split = f" in {f.shard[1]} parts" if f.shard else ""
            parts.append(f"{safe_text(quant)} {format_bytes(f.size)}{split}")
        if parts:
            print("    " + ", ".join(parts))
    print()
    print("Pull one with `assistant models pull owner/repo:QUANT`.")
    return 0


def cmd_pull(args) -> int:
    from models import download, fit, hub, library, speed
    from models.shape import from_catalogue

    target = library.pull_target(args.name)
    installed = _installed_and_present(target.name)
    if installed:
        print(f"{safe_text(target.name)} is already installed ({safe_text(installed.path)}).")
        return 0
    if hub.is_offline() and not (target.filename and download.cached_file(target.repo_id, target.filename)):
        hub.ensure_online()  # say so before anything else: there is nothing to pull it from
    plan = library.plan_pull(target)
    shape = None
    if target.entry is not None and target.entry.size_bytes:
        shape = from_catalogue(target.entry)
    else:
        from models.remote_header import read_remote_header

        try:
            shape = read_remote_header(target.repo_id, plan.filename, target.revision).shape
        except (hub.HubAuthError, hub.HubNotFoundError):
            raise  # the download would fail the same way: say so now
        except UserError as exc:
            print(f"(no fit estimate: {safe_text(exc)})", file=sys.stderr)
    size = plan.size or (shape.size_bytes if shape else None)
    print(f"Pulling {safe_text(plan.name)}: {safe_text(target.repo_id)}/{safe_text(plan.filename)}, {format_bytes(size)}")
    if shape is not None:
        verdict = fit.fit(shape, args.ctx)
        figure = speed.estimate_speed(shape)
        print(f"  {verdict.verdict}: {safe_text(verdict.reason)} About {format_tps(figure.tokens_per_s, estimate=True, unit=False)} tokens/s here.")
        if verdict.verdict == fit.NO_FIT and not args.force:
            raise UserError(f"{safe_text(plan.name)} will not fit this machine; pull it with --force to download it anyway.")

    return _follow_download(args.name, plan=plan)


def _follow_download(name: str, *, plan=None) -> int:
    """Pull `name` through the download manager, with a progress bar; Ctrl-C pauses it (exit 130)."""
    from models import download_manager as dm

    manager = dm.DownloadManager(max_active=1)
    key = manager.key(name)
    earlier = manager.get(key)
    if earlier is not None and earlier.done:
        print(f"Resuming from the {format_bytes(earlier.done)} an earlier pull kept.")
    bar = _ProgressBar(safe_text(plan.filename if plan else (earlier.filename if earlier else None) or name))

    def on_event(event) -> None:
        if event.download.name == key and event.kind == dm.PROGRESS and event.download.total:
            d = event.download
            bar.update(d.done, d.total, d.rate, d.eta)

    unsubscribe = manager.subscribe(on_event)
    try:
        manager.start(name, plan=plan)
        info = manager.get(key)
        while info is not None and info.active:
            info = manager.wait(key, timeout=0.2)
    except KeyboardInterrupt:
        manager.pause(key)
        info = manager.wait(key, timeout=30)
        bar.close()
        kept = f" at {format_bytes(info.done)} of {format_bytes(info.total)}" if info and info.done else ""
        print(f"\nPaused {safe_text(key)}{kept}. `assistant models pull {safe_text(name)}` resumes it; "
              "`assistant models downloads` lists paused downloads.", file=sys.stderr)
        return 130
    finally:
        unsubscribe()
        bar.close()
    if info is None:
        raise UserError(f"The download of {safe_text(key)} was cancelled.")
    if info.status == dm.FAILED:
        raise UserError(info.error or info.message)
    if info.status != dm.DONE:
        raise UserError(f"The download of {safe_text(key)} stopped ({info.status}); "
                        f"`assistant models pull {safe_text(name)}` resumes it.")
    if info.from_cache:
        print(f"Found {safe_text(info.filename or key)} in the Hugging Face cache, checked against the Hub's SHA-256.")
    else:
        resumed = f", resumed from {format_bytes(info.resumed_from)}" if info.resumed_from else ""
        print(f"Downloaded {format_bytes(info.total)}{resumed}; SHA-256 verified.")
    print(f"Installed as {safe_text(info.installed_as)}: assistant chat -m {safe_text(info.installed_as)}")
    return 0


def _installed_and_present(name: str):
    from pathlib import Path

    from models import registry

    m = registry.get(name)
    return m if m is not None and not m.is_builtin and Path(m.path).exists() else None


def _terminal_columns() -> int:
    import os

    try:
        return os.get_terminal_size(sys.stderr.fileno()).columns
    except (OSError, ValueError):
        return 0


class _ProgressBar:
    """A tqdm bar on a terminal; a line every 10% otherwise (logs, pipes)."""

    def __init__(self, label: str):
        self.label = label
        self.bar: Any = None  # a tqdm bar, made at the first report
        self.tty = sys.stderr.isatty() and _terminal_columns() >= 40
        self.last_tenth = -1
        self.lock = threading.Lock()

    def update(self, done: int, total: int, rate: float, eta: float | None) -> None:
        with self.lock:
            if self.tty:
                if self.bar is None:
                    from tqdm import tqdm

                    # tqdm redraws with CRs: it writes under the terminal stream, its label escaped here.
                    self.bar = tqdm(total=total, initial=done, unit="B", unit_scale=True, unit_divisor=1000,
                                    desc=safe_text(self.label), file=raw_stream(sys.stderr), dynamic_ncols=True)
                self.bar.update(done - self.bar.n)
                return
            tenth = int(10 * done / total) if total else 0
            if tenth != self.last_tenth:
                self.last_tenth = tenth
                speed = f" at {format_bytes(rate)}/s" if rate > 0 else ""
                left = f", {eta:.0f} s left" if eta is not None and done < total else ""
                print(f"  {done / total:4.0%} of {format_bytes(total)}{speed}{left}", file=sys.stderr, flush=True)

    def close(self) -> None:
        with self.lock:
            if self.bar is not None:
                self.bar.close()
                self.bar = None


def cmd_downloads(args) -> int:
    from models import download_manager as dm

    stopped = dm.DownloadManager().downloads()
    if args.json:
        print(json.dumps([{"name": d.name, "label": d.label, "status": d.status, "done": d.done, "total": d.total,
                           "repo": d.repo, "filename": d.filename, "sha256": d.sha256,
                           "found_in_cache": d.found_in_cache} for d in stopped], indent=2))
        return 0
    if not stopped:
        print("No paused or unfinished downloads.")
        return 0
    rows = []
    for d in stopped:
        kept = f"{format_bytes(d.done)} of {format_bytes(d.total)}" if d.total else f"{format_bytes(d.done)} kept"
        where = "/".join(safe_text(x) for x in (d.repo, d.filename) if x) or "?"
        note = "found in the Hugging Face cache" if d.found_in_cache else safe_text(d.label)
        rows.append([safe_text(d.name), d.status, kept, where, note])
    print(_table(["NAME", "STATUS", "KEPT", "FILE", ""], rows))
    print()
    print("Resume one with `assistant models downloads resume NAME` (or pull it again); "
          "`assistant models downloads discard NAME` deletes the part downloaded.")
    return 0


def _stopped_download(manager, name: str):
    info = manager.get(name)
    if info is None or not info.stopped:
        raise UserError(f"No paused download is named {safe_text(repr(name))}; "
                        "`assistant models downloads` lists them.")
    return info


def cmd_downloads_resume(args) -> int:
    from models import download_manager as dm

    _stopped_download(dm.DownloadManager(restore=True), args.name)
    return _follow_download(args.name)


def cmd_downloads_discard(args) -> int:
    from models import download_manager as dm

    manager = dm.DownloadManager()
    if args.all == bool(args.name):
        raise UserError("Name one paused download to discard, or give --all.")
    names = [d.name for d in manager.downloads()] if args.all else [_stopped_download(manager, args.name).name]
    for name in names:
        info = manager.get(name)
        kept = info.done if info else 0
        manager.cancel(name)
        manager.wait(name, timeout=60)
        print(f"Discarded {safe_text(name)}" + (f" and freed {format_bytes(kept)}." if kept else "."))
    if not names:
        print("No paused or unfinished downloads.")
    return 0


def cmd_import(args) -> int:
    from models import library

    m = library.import_file(args.path, args.name, projector_file=args.projector)
    print(f"Imported {safe_text(m.path)} as {safe_text(m.name)} (not copied): assistant chat -m {safe_text(m.name)}")
    if m.projector:
        print(f"It sees images through {safe_text(m.projector)}: assistant chat -m {safe_text(m.name)} --image FILE")
    return 0


def cmd_rm(args) -> int:
    from models import library

    entry, freed = library.remove(args.name)
    print(library.describe_removal(entry, freed))
    return 0


def _with_draft(report, draft_name: str | None, kv_cache_type: str = "f16"):
    """(the report, the draft's parts): a draft model's share added to a fit report (same context, same
    process: no second overhead), the verdict judged again on the sum; (report, None) without one."""
    if not draft_name:
        return report, None
    from dataclasses import replace

    from models import fit, library

    draft = library.fit_report(draft_name, report.verdict.estimate.n_ctx, kv_cache_type=kv_cache_type).verdict.estimate
    e = report.verdict.estimate
    combined = replace(e, weights=e.weights + draft.weights, kv_cache=e.kv_cache + draft.kv_cache,
                       compute=e.compute + draft.compute)
    parts = {"name": draft_name, "weights": draft.weights, "kv_cache": draft.kv_cache, "compute": draft.compute}
    return replace(report, verdict=fit.judge(combined, report.verdict.machine)), parts


def cmd_set(args) -> int:
    from assistant.preferences import model_load_settings, set_model_load_settings
    from common.settings_store import SettingsStore

    values = cache_settings(args)
    if not values and not args.reset:
        raise UserError("Say what to keep: --kv-cache-type f16|q8_0|q4_0 and/or --flash-attn auto|on|off "
                        "(or --reset to forget).")
    store = SettingsStore()
    own = {} if args.reset else {**model_load_settings(_preferences(store), args.name), **values}
    kept = model_load_settings(set_model_load_settings(store, args.name, own), args.name)
    words = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in kept.items())
    print(f"{safe_text(args.name)}: {words or 'the defaults'}.")
    return 0


def _preferences(store):
    from assistant.preferences import load_preferences

    return load_preferences(store)


def cmd_fit(args) -> int:
    from models import library
    from models.labels import params_label

    t0 = time.monotonic()
    report = library.fit_report(args.name, args.ctx, kv_cache_type=args.kv_cache_type)
    report = dataclasses.replace(report, checks=library.estimate_checks())  # once, for this report only
    report, draft = _with_draft(report, getattr(args, "draft", None), args.kv_cache_type)
    v, e, s = report.verdict, report.verdict.estimate, report.shape
    active = report.entry.active_params if report.entry and report.entry.active_params else (
        s.active_params if s.is_moe else None)
    if args.json:
        print(json.dumps({
            "name": report.name, "shape_from": report.shape_from, "verdict": v.verdict, "where": v.where,
            "reason": v.reason, "n_ctx": e.n_ctx,
            "memory": {"weights": e.weights, "kv_cache": e.kv_cache, "recurrent_state": e.recurrent_state,
                       "compute": e.compute, "overhead": e.overhead, "projector": e.projector, "total": e.total,
                       "kv_cache_type": e.kv_cache_type, "flash_attn": e.flash_attn, "kv_layers": e.kv_layers,
                       "kv_layers_windowed": e.kv_layers_windowed, "window_cells": e.window_cells},
            "projector_from": report.projector,
            "machine": {"total_ram": v.machine.total_ram, "available_ram": v.machine.available_ram,
                        "gpus": [g.__dict__ for g in v.machine.gpus]},
            "model": {"architecture": s.architecture, "quant": s.quant, "size_bytes": s.size_bytes,
                      "params": s.n_params, "active_params": active, "layers": s.n_layers, "heads": s.n_heads,
                      "kv_heads": s.n_kv_heads, "context_length": s.context_length,
                      "bytes_per_token": s.bytes_per_token, "sliding_window": s.sliding_window,
                      "recurrent_layers": s.recurrent_layers, "experts": s.n_expert,
                      "experts_used": s.n_expert_used, "shape_approx": s.approx},
            "tokens_per_s": report.speed.tokens_per_s if report.speed else None,
            "speed_measured": bool(report.speed and report.speed.measured),
            "draft": draft,
            "estimate_checks": [{"name": name, "estimated": c.estimated, "measured": c.measured, "error": c.error}
                                for name, c in report.checks],
        }, indent=2))
        return 0
    print(f"{safe_text(report.name)}: {safe_text(s.architecture)}, {params_label(s.n_params, active)} parameters, "
          f"{safe_text(s.quant)}, {format_bytes(s.size_bytes)}, "
          f"{s.n_layers} layers, {s.n_heads} heads ({s.n_kv_heads} KV), trained for {format_context(s.context_length)} tokens")
    approx = "; its shape is approximate until the file's header is read" if s.approx else ""
    print(f"  (from the {safe_text(report.shape_from)}{approx}; {time.monotonic() - t0:.1f} s)")
    print(f"Memory for a {e.n_ctx}-token context:")
    parts = _memory_parts(e, s, report.projector)
    for label, value, note in parts[:-1]:
        print(f"  {label:16} {format_bytes(value):>10}" + (f"   ({note})" if note else ""))
    if draft:
        print(f"  draft {safe_text(draft['name'])}: weights {format_bytes(draft['weights'])}, KV cache "
              f"{format_bytes(draft['kv_cache'])}, compute {format_bytes(draft['compute'])} (in the parts above)")
    label, value, _note = parts[-1]
    print(f"  {label:16} {format_bytes(value):>10}")
    print(f"Verdict: {v.verdict}. {safe_text(v.reason)}")
    for name, verdict in v.gpu_verdicts:
        print(f"  on {safe_text(name)}: {verdict}")
    print(_reads_line(s))
    if report.speed:
        _print_speed(report, s)
    return 0


def _memory_parts(e, s, projector_from: str | None = None) -> list[tuple[str, int, str]]:
    """The estimate's parts as the fit command prints them, each with what it is made of."""
    if e.kv_layers_windowed:
        kv_note = f"{e.kv_cache_type}; {e.kv_layers_windowed} of {e.kv_layers} layers window-sized"
    elif s.recurrent_layers:
        kv_note = f"{e.kv_cache_type}; {e.kv_layers} attention layers of {s.n_layers}"
    else:
        kv_note = f"{e.kv_cache_type}; every layer" if e.kv_layers == s.n_layers else f"{e.kv_cache_type}"
    parts = [("weights", e.weights, ""), ("KV cache", e.kv_cache, kv_note)]
    if s.recurrent_layers:
        parts.append(("recurrent state", e.recurrent_state,
                      f"{s.recurrent_layers} linear-attention layers; the same at any context"))
    attention = "flash attention" if e.flash_attn else "no flash attention"
    parts += [("compute buffer", e.compute, f"one 512-token batch, {attention}"),
              ("app and runtime", e.overhead, "")]
    if e.projector:
        parts.append(("image projector", e.projector, f"it sees images; from {safe_text(projector_from or '?')}"))
    parts.append(("total", e.total, ""))
    return parts


def _reads_line(s) -> str:
    """How much one token reads of the weights, and why not all of them."""
    why = []
    if s.is_moe:
        why.append(f"{s.n_expert_used} of {s.n_expert} experts")
    if s.per_layer_embedding_width and s.lookup_only_bytes:
        why.append("its per-layer embedding tables are looked up, not read")
    elif s.lookup_only_bytes:
        why.append("its token embedding table is looked up, not read")
    return (f"Reads {format_bytes(s.bytes_per_token)} per token of {format_bytes(s.weight_bytes)}"
            + (f" ({'; '.join(why)})." if why else "."))


def _print_speed(report, s) -> None:
    from models import speed

    sp = report.speed
    if sp.measured or sp.calibration is None:
        print(f"Speed: {sp.tokens_per_s:.1f} tokens/s, measured on this machine on a quiet CPU.")
    else:
        c = sp.calibration
        kind = speed.kernel_kind(s)
        k = c.for_kind(kind)
        basis = (f"fitted to {k.n_models} measured {kind} model(s)" if k.n_models
                 else f"default factors: nothing in {kind} measured here yet")
        costs = speed.shape_costs(s)
        memory = c.curve.at(speed.WORKING_SET_FACTOR * costs.read_bytes)
        rate = c.weight_rate(costs) * k.efficiency / speed.DEFAULT_EFFICIENCY
        bound = (f"what this CPU's kernels manage with {c.curve.threads} threads" if c.kernel_rate < memory
                 * speed.DEFAULT_EFFICIENCY else f"{k.efficiency:.0%} of the {format_byte_rate(memory)} probed")
        slow = (f", {format_bytes(s.slow_kernel_bytes)} of it in types with slower CPU kernels"
                if s.slow_kernel_bytes else "")
        print(f"Speed: about {sp.tokens_per_s:.1f} tokens/s here (estimate: {format_bytes(s.bytes_per_token)} read per "
              f"token{slow}, at {format_byte_rate(rate)}: {bound}; plus fixed per-token costs "
              f"× {k.overhead_scale:.2f}; {basis}).")
    if report.checks:
        print("The estimate against each model measured here (each estimated without its own measurement):")
        for name, check in report.checks:
            print(f"  {safe_text(name)}: estimate {check.estimated:.1f} tok/s, measured {check.measured:.1f} tok/s "
                  f"on this machine ({100 * check.error:+.0f}%)")

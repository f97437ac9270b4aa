"""The user's model library: pull, import, remove, list, and size up models. Used by the CLI and the window.

A name the user types means, in this order: an installed model (`starter`,
`llama3.2-1b`, `owner/repo:Q4_K_M`, an imported name), a catalogue entry
(`llama3.2-1b`, `llama3.2-1b:Q8_0`), or a Hub reference (`owner/repo:QUANT`,
`owner/repo/file.gguf`). A pulled model is installed under the name it was
pulled by, so `assistant chat -m owner/repo:Q4_K_M` uses it.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

from common.errors import ModelFileError, ModelNotFoundError, UserError
from common.terminal import safe_text
from models import catalogue, download, fit, hub, projector, registry, repo_path, speed, starter
from models.catalogue import CatalogueEntry
from models.download import ProgressCallback
from models.gguf_file import read_gguf_info
from models.registry import InstalledModel
from models.shape import ModelShape, from_catalogue, from_gguf
from models.speed import EstimateCheck


@dataclass(frozen=True)
class PullTarget:
    name: str  # what it is installed as
    repo_id: str
    filename: str | None  # known (catalogue, or an exact file) or None: pick by quant from the repo's files
    quant: str | None
    revision: str
    entry: CatalogueEntry | None


def pull_target(name: str) -> PullTarget:
    """What `pull NAME` would download; raises ModelNotFoundError for a name that is neither catalogue nor Hub."""
    entry = catalogue.get(name)
    if entry is not None and (entry.is_starter or entry.repo is None):
        raise UserError(f"{entry.name} is built in; it needs no download.")
    if "/" not in name:  # a catalogue name, optionally with a quant
        if entry is not None and entry.repo is not None:
            return PullTarget(entry.name, entry.repo, entry.file, entry.quant, "main", entry)
        base, _, quant = name.partition(":")
        known = catalogue.get(base)
        if known is not None:
            raise ModelNotFoundError(
                f"{base} has no {safe_text(quant)} quant; its repo offers: {', '.join(known.quants)}."
            )
        raise ModelNotFoundError(
            f"{safe_text(repr(name))} is neither in the catalogue (`assistant models list`) nor a Hub name like "
            "owner/repo:Q4_K_M or owner/repo/file.gguf."
        )
    ref = hub.parse_ref(name)
    if ref is None:
        raise ModelNotFoundError(
            f"{safe_text(repr(name))} is not a Hub name like owner/repo:Q4_K_M or owner/repo/file.gguf."
        )
    if ref.filename is not None:
        repo_path.require_file_path(ref.filename, ref.repo_id, typed=True)
    repo_path.require_revision(ref.revision, ref.repo_id)
    return PullTarget(ref.name, ref.repo_id, ref.filename, ref.quant, ref.revision, entry)


@dataclass(frozen=True)
class PullPlan:
    """A pull, resolved against the Hub: the exact file, with what is known about it before downloading."""

    target: PullTarget
    filename: str
    size: int | None
    sha256: str | None

    @property
    def name(self) -> str:
        """The installed name: as typed, with the quant actually chosen when none was given."""
        t = self.target
        if t.filename is None and t.quant is None:
            return f"{t.repo_id}:{hub.quant_of_filename(self.filename) or hub.DEFAULT_QUANT}"
        return t.name


def plan_pull(target: PullTarget) -> PullPlan:
    """Find the exact file: the catalogue's or the named one as is, a quant through the repo's file list."""
    if target.filename:
        return PullPlan(target, target.filename, target.entry.size_bytes if target.entry else None, None)
    listing = hub.list_gguf_files(target.repo_id, target.revision)
    chosen = hub.choose_file(listing, quant=target.quant)
    return PullPlan(target, chosen.path, chosen.size, chosen.sha256)


def pull(
    name: str,
    *,
    on_progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    plan: PullPlan | None = None,
) -> tuple[InstalledModel, download.DownloadResult]:
    """Download (or find in the Hub cache) and install a model; returns the installed entry and the download."""
    target = plan.target if plan else pull_target(name)
    installed = registry.get(target.name) or registry.get(name)
    if hub.is_offline() and installed and Path(installed.path).exists():
        result = download.DownloadResult(
            Path(installed.path), target.repo_id, installed.filename or "", target.revision,
            installed.revision or "", installed.sha256, Path(installed.path).stat().st_size, 0, 0, True,
        )
        return installed, result
    if plan is None:
        if hub.is_offline() and target.filename:
            plan = PullPlan(target, target.filename, None, None)  # the cache may have it
        else:
            plan = plan_pull(target)
    try:
        result = download.download(
            target.repo_id, plan.filename, revision=target.revision, on_progress=on_progress, cancel=cancel
        )
    except hub.HubNotFoundError:
        if target.entry is None or plan.sha256 is not None:
            raise
        # The catalogue's file name has drifted from the repo's: pick the quant from the live list.
        listing = hub.list_gguf_files(target.repo_id, target.revision)
        chosen = hub.choose_file(listing, quant=target.quant)
        plan = PullPlan(target, chosen.path, chosen.size, chosen.sha256)
        result = download.download(
            target.repo_id, plan.filename, revision=target.revision, on_progress=on_progress, cancel=cancel
        )
    if plan.sha256 and result.sha256 and plan.sha256 != result.sha256:
        # The file list and the file disagree: the repo changed between the two requests.
        raise UserError(f"{plan.filename} changed on the Hub while it was being pulled; pull it again.")
    info = read_gguf_info(result.path)  # the published file must also be a model llama.cpp can load
    projector_path = _pull_projector(target, on_progress, cancel, offset=result.size)
    entry = InstalledModel(
        name=plan.name,
        path=str(result.path),
        source="hub",
        chat_format=target.entry.chat_format if target.entry else None,
        repo=target.repo_id,
        filename=plan.filename,
        sha256=result.sha256,
        revision=result.commit,
        quant=hub.quant_of_filename(plan.filename) or info.quant,
        projector=str(projector_path) if projector_path else None,
    )
    return registry.register(entry), result


def _pull_projector(target: PullTarget, on_progress: ProgressCallback | None, cancel: threading.Event | None,
                    offset: int) -> Path | None:
    """A catalogue size that sees images: its projector, downloaded (verified, resumable) like the model itself.

    Progress continues from the model's bytes (`offset`), so one bar covers both files."""
    entry = target.entry
    if entry is None or entry.projector is None:
        return None
    total_extra = entry.projector.size_bytes

    def progress(done: int, total: int, rate: float, eta: float | None) -> None:
        if on_progress is not None:
            on_progress(offset + done, offset + max(total, total_extra), rate, eta)

    result = download.download(target.repo_id, entry.projector.file, revision=target.revision,
                               on_progress=progress, cancel=cancel)
    projector.read_projector_info(result.path)  # it must be a projector llama.cpp can load, like the model
    return result.path


_NAME_UNSAFE = re.compile(r"[^\w.+-]+")


def import_name(info, path: Path) -> str:
    """The name an imported file goes by: the model's own name (GGUF `general.name`), else the file's.

    Made safe to type after `-m`: runs of spaces, control characters, slashes, colons and `@`
    (which would read as a Hub name or a remote server) become one '-'.
    """
    for raw in (info.name, path.stem):
        name = _NAME_UNSAFE.sub("-", raw or "").strip("-.")[:64].rstrip("-.")
        if name:
            return name
    return "imported"


def import_file(path, name: str | None = None, *, by_model_name: bool = False,
                projector_file=None) -> InstalledModel:
    """Register a .gguf that is already on disk, in place (no copy).

    With no `name`, the file's name without .gguf (the model's own name with
    `by_model_name`, as the window names imports: `import_name`), or the next free
    `name-2`… if another file has it; a `name` given and taken by another file is refused.
    `projector_file`: the image projector (mmproj) it sees images through; without it, one beside
    the file (`mmproj*.gguf`) is taken when there is one.
    """
    p = Path(path).expanduser()
    info = read_gguf_info(p)  # refuses a missing, broken or non-GGUF file with a clear reason
    if info.architecture == "clip":
        raise UserError(f"{safe_text(p)} is an image projector (mmproj), not a model; import the model with "
                        "--projector FILE instead.")
    vision = projector.for_model(p, str(projector_file) if projector_file else None)
    p = p.resolve()
    chosen = name or (import_name(info, p) if by_model_name else p.stem)
    if registry.is_reserved_name(chosen):
        if name:
            raise UserError(
                f"{safe_text(repr(name))} is the name of a built-in, catalogue or Hub model; choose another with --name."
            )
        chosen = f"{chosen}-imported"
    entry = InstalledModel(name=chosen, path=str(p), source="local", quant=info.quant,
                           projector=str(vision.path) if vision else None)
    try:
        return registry.add(entry, free_name=name is None)
    except registry.NameTakenError as exc:
        raise UserError(
            f"A model named {safe_text(repr(name))} is already installed from {safe_text(exc.existing.path)}; "
            "choose another with --name."
        ) from None


def remove(name: str) -> tuple[InstalledModel, int]:
    """Uninstall a model; a downloaded one's file is deleted from the Hub cache. Returns (entry, bytes freed).

    Only files inside the Hugging Face cache are ever deleted. An entry whose file is
    elsewhere (an imported file, or a download recorded by an older version at a path
    outside the cache) is removed from the list and its file left where it is.
    """
    entry = registry.get(name) or registry.get(registry.canonical_name(name))
    if entry is None:
        raise ModelNotFoundError(
            f"No installed model is named {safe_text(repr(name))}; `assistant models list` shows them."
        )
    name = entry.name
    if entry.is_builtin:
        raise UserError(f"{name} is built in and cannot be removed.")
    freed = 0
    if entry.source == "hub" and download.in_cache(Path(entry.path)):
        path = Path(entry.path)
        shared = [
            m for m in registry.list_installed()
            if m.name != name and m.source == "hub" and Path(m.path) == path
        ]
        if not shared:
            freed = download.delete_cached(path)
    if entry.source == "hub" and entry.projector and download.in_cache(Path(entry.projector)):
        if not any(m.name != name and m.projector == entry.projector for m in registry.list_installed()):
            freed += download.delete_cached(Path(entry.projector))
    registry.unregister(name)
    return entry, freed


def describe_removal(entry: InstalledModel, freed: int) -> str:
    """One sentence on what `remove` did, for the CLI and the window."""
    from common.formatting import format_bytes

    name = safe_text(entry.name)
    if entry.source == "hub" and not download.in_cache(Path(entry.path)):
        return (f"Removed {name} from the list; its file {safe_text(entry.path)} is outside the Hugging Face "
                "cache, so it was left where it is.")
    if entry.source == "hub":
        return (f"Removed {name} and freed {format_bytes(freed)}." if freed else
                f"Removed {name}; its file is still used by another installed name, so it was kept.")
    return f"Removed {name} from the list; the file {safe_text(entry.path)} was left where it is."


# --- sizing up -----------------------------------------------------------------------------


BASE_MODEL_LABEL = "base model: continues text, does not follow instructions"
SEES_IMAGES_LABEL = "sees images"


@dataclass(frozen=True)
class ModelRow:
    name: str
    label: str
    family: str | None
    installed: bool
    source: str  # "starter" (built in), "hub", "local" or "catalogue"
    path: str | None
    size_bytes: int | None
    size_approx: bool
    params: int | None
    quant: str | None
    context_length: int | None
    verdict: str | None
    fit_reason: str | None
    tokens_per_s: float | None
    speed_measured: bool
    problem: str | None = None  # why an installed file cannot be used
    is_base: bool = False  # continues text, does not follow instructions (see is_base_model)
    catalogue_name: str | None = None  # the catalogue entry it is ("gemma3-1b:Q8_0"), if it is one
    active_params: int | None = None  # a mixture of experts: parameters used per token (None: all)
    thinking: str | None = None  # the thinking format (catalogue), if the model thinks
    sees_images: bool = False  # has an image projector (installed: found; catalogue: the repo publishes one)
    older: bool = False  # its family is listed under "older"
    busy_tokens_per_s: float | None = None  # measured only on a busy CPU: shown as busy, never as its speed
    projector_bytes: int = 0  # the projector's memory, counted in the verdict

    @property
    def is_starter(self) -> bool:
        """Built in (the starter or Gemma 3 270M base): never downloaded, never removed."""
        return self.source == "starter"

    @property
    def base_label(self) -> str | None:
        return BASE_MODEL_LABEL if self.is_base else None


def is_base_model(entry: CatalogueEntry | None, info=None, chat_format: str | None = None) -> bool:
    """A base model: marked so in the catalogue, or a GGUF with no chat template that nothing supplies one for.

    `info`: the file's GGUFInfo when it is at hand; `chat_format`: a format the installed entry names.
    """
    if entry is not None and entry.is_base:
        return True
    if info is None:
        return False
    return info.chat_template is None and not (chat_format or (entry.chat_format if entry else None))


def installed_catalogue_entry(m: InstalledModel) -> CatalogueEntry | None:
    """The catalogue entry an installed model is (built-in, pulled by catalogue name or from a catalogued repo).

    The one place an installed model is matched to the catalogue: everything else asks an `InstalledIndex`.
    """
    if m.source == "local":
        return None
    entry = catalogue.get(m.name)
    if entry is None and m.repo and m.filename:
        entry = catalogue.entry_for_hub_file(m.repo, m.filename)
    return entry


@dataclass(frozen=True)
class IndexedModel:
    """An installed model with its catalogue entry (None for an imported file or an uncatalogued repo)."""

    model: InstalledModel
    entry: CatalogueEntry | None

    @property
    def name(self) -> str:
        return self.model.name


@dataclass(frozen=True)
class InstalledIndex:
    """What is installed, by name (built-in models first), each matched to the catalogue once."""

    models: dict[str, IndexedModel] = field(default_factory=dict)

    def get(self, name: str) -> IndexedModel | None:
        return self.models.get(name)

    def catalogue_entry(self, name: str) -> CatalogueEntry | None:
        """The entry of an installed name, else of a catalogue name or Hub reference (`catalogue.get`)."""
        found = self.models.get(name)
        return found.entry if found is not None else catalogue.get(name)

    def installed_as(self, entry: CatalogueEntry) -> str | None:
        """The installed name of this catalogue entry at its quant, if it is installed."""
        return next((m.name for m in self.models.values() if m.entry is not None
                     and m.entry.base_name == entry.base_name and m.entry.quant.upper() == entry.quant.upper()), None)

    def installed_size(self, entry: CatalogueEntry) -> str | None:
        """The installed name of this size in any quant (its default quant first), if one is installed."""
        found = [m for m in self.models.values() if m.entry is not None and m.entry.base_name == entry.base_name]
        found.sort(key=lambda m: bool(m.entry and m.entry.quant.upper() != m.entry.default_quant.upper()))
        return found[0].name if found else None


def installed_index() -> InstalledIndex:
    """Read the installed list (a small JSON file) and match each model to the catalogue."""
    return InstalledIndex({m.name: IndexedModel(m, installed_catalogue_entry(m)) for m in registry.list_installed()})


def _installed_file(m: InstalledModel) -> Path | None:
    """The model's file; None for a built-in one not prepared yet (listing must not assemble 253 MB)."""
    model = starter.builtin(m.name) if m.is_builtin else None
    if model is not None:
        path = model.path()  # BuiltinModelMissingError if its package is not installed
        return path if path.exists() else None
    return Path(m.path)


def _installed_facts(m: InstalledModel, entry: CatalogueEntry | None):
    """(shape, GGUFInfo or None, path or None) of an installed model; raises a UserError if it cannot be used."""
    path = _installed_file(m)
    if path is None:
        if entry is None:
            raise UserError(f"{safe_text(m.name)} has no file yet and nothing describes it.")
        return from_catalogue(entry), None, None
    info = read_gguf_info(path)
    return from_gguf(info), info, path


def list_models(n_ctx: int | None = None, include_catalogue: bool = True, *, index: InstalledIndex | None = None,
                machine: fit.Machine | None = None, calib: speed.Calibration | None = None) -> list[ModelRow]:
    """Installed models first (the built-in ones on top), then catalogue entries not installed."""
    machine = machine or fit.this_machine()
    calib = calib or speed.calibration()
    rows: list[ModelRow] = []
    covered: set[str] = set()
    for indexed in (index or installed_index()).models.values():
        m, entry = indexed.model, indexed.entry
        if entry is not None:
            covered.add(entry.name)
        label = entry.label if entry else (m.repo or Path(m.path).name)
        family = entry.family if entry else None
        try:
            shape, info, path = _installed_facts(m, entry)
        except (ModelFileError, UserError) as exc:
            rows.append(ModelRow(m.name, label, family, True, m.source, m.path or None, None, False, None, m.quant,
                                 None, None, None, None, False, str(exc), is_base_model(entry, None, m.chat_format),
                                 entry.name if entry else None))
            continue
        projector_bytes = installed_projector_bytes(m, entry, path)
        verdict = fit.fit(shape, n_ctx, machine, projector_bytes=projector_bytes)
        fig = speed.speed_for(path, shape, calib=calib)
        rows.append(ModelRow(
            m.name, label, family, True, m.source, str(path) if path else m.path, shape.size_bytes, False,
            shape.n_params, shape.quant, shape.context_length, verdict.verdict, verdict.reason,
            fig.tokens_per_s if fig else None, bool(fig and fig.measured), None,
            is_base_model(entry, info, m.chat_format), entry.name if entry else None,
            **{**_entry_facts(entry, shape), "sees_images": projector_bytes > 0}, projector_bytes=projector_bytes,
            busy_tokens_per_s=speed.busy_speed(path) if path else None,
        ))
    if include_catalogue:
        for entry in catalogue.entries():
            if entry.name in covered or entry.is_starter:
                continue
            shape = from_catalogue(entry)
            projector_bytes = projector.estimate_from_size(entry.projector.size_bytes) if entry.projector else 0
            verdict = fit.fit(shape, n_ctx, machine, projector_bytes=projector_bytes)
            fig = speed.estimate_speed(shape, calib=calib)
            rows.append(ModelRow(
                entry.name, entry.label, entry.family, False, "catalogue", None, entry.size_bytes,
                entry.size_approx, entry.params, entry.quant, entry.context_length, verdict.verdict,
                verdict.reason, fig.tokens_per_s, False, None, entry.is_base, entry.name, **_entry_facts(entry, shape),
                projector_bytes=projector_bytes,
            ))
    return rows


def installed_projector_bytes(m: InstalledModel, entry: CatalogueEntry | None, path: Path | None) -> int:
    """The memory of the projector an installed model sees images through (0: it sees none)."""
    if m.is_builtin:
        return 0
    try:
        found = projector.for_model(path or m.path, m.projector)
    except ModelFileError:
        found = None  # the model's row says what is wrong when it is loaded
    if found is not None:
        return found.memory_bytes
    if entry is not None and entry.projector is not None and m.projector:
        return projector.estimate_from_size(entry.projector.size_bytes)
    return 0


def _entry_facts(entry: CatalogueEntry | None, shape: ModelShape) -> dict:
    """What a row says beyond size and speed: active parameters, thinking, images, an older family."""
    active = entry.active_params if entry is not None and entry.active_params else None
    if active is None and shape.is_moe:
        active = shape.active_params
    return {"active_params": active, "thinking": entry.thinking if entry else None,
            "sees_images": bool(entry and entry.sees_images), "older": bool(entry and entry.older)}


@dataclass(frozen=True)
class FitReport:
    name: str
    shape: ModelShape
    verdict: fit.FitVerdict
    speed: speed.SpeedFigure | None
    shape_from: str  # "installed file", "remote header (N bytes read)", "catalogue"
    entry: CatalogueEntry | None = None
    checks: tuple[tuple[str, EstimateCheck], ...] = ()  # (model name, its estimate against its measured speed)
    projector: str | None = None  # where the projector's figure came from, when the model sees images


def estimate_checks() -> tuple[tuple[str, EstimateCheck], ...]:
    """Every model measured here on a quiet CPU, by installed name, with its estimate (made without its own
    measurement) against what it measured: the estimate's error, in the open."""
    names = {}
    for m in registry.list_installed():
        try:
            path = _installed_file(m)
        except UserError:
            continue
        if path is not None:
            names[str(Path(path).resolve())] = m.name
    return tuple((names.get(c.path, Path(c.path).name), c) for c in speed.estimate_checks())


def fit_report(name: str, n_ctx: int | None = None, *, kv_cache_type: str = "f16") -> FitReport:
    """The memory estimate, verdict and speed for an installed, catalogue or Hub model (a range read if needed)."""
    installed = registry.get(name)
    checks: tuple[tuple[str, EstimateCheck], ...] = ()  # `models fit` adds them (estimate_checks): the window needs none
    if installed is not None:
        entry = installed_catalogue_entry(installed)
        shape, _info, path = _installed_facts(installed, entry)
        extra = installed_projector_bytes(installed, entry, path)
        return FitReport(name, shape, fit.fit(shape, n_ctx, kv_cache_type=kv_cache_type, projector_bytes=extra),
                         speed.speed_for(path, shape),
                         "installed file" if path else "catalogue (the built-in file is prepared on first use)",
                         entry, checks, "its projector's header" if extra else None)
    p = Path(name).expanduser()
    if p.suffix.lower() == ".gguf" and p.exists():
        shape = from_gguf(read_gguf_info(p))
        beside = projector.for_model(p)
        extra = beside.memory_bytes if beside else 0
        return FitReport(name, shape, fit.fit(shape, n_ctx, kv_cache_type=kv_cache_type, projector_bytes=extra),
                         speed.speed_for(p, shape), "local file", None, checks,
                         f"{beside.path.name} beside it" if beside else None)
    target = pull_target(name)
    try:
        from models.remote_header import read_remote_header

        plan = plan_pull(target)
        remote = read_remote_header(target.repo_id, plan.filename, target.revision)
        shape = remote.shape
        shape_from = f"remote header ({remote.bytes_read:,} bytes read in {remote.requests} requests)"
    except UserError as exc:
        if target.entry is None:
            raise
        shape = from_catalogue(target.entry)
        why = "the Hub cannot be reached" if isinstance(exc, hub.HubUnreachableError) else str(exc).rstrip(".")
        shape_from = f"catalogue, as the file's header could not be read: {why}"
    extra = 0
    if target.entry is not None and target.entry.projector is not None:
        extra = projector.estimate_from_size(target.entry.projector.size_bytes)
    return FitReport(name, shape, fit.fit(shape, n_ctx, kv_cache_type=kv_cache_type, projector_bytes=extra),
                     speed.speed_for(None, shape), shape_from, target.entry, checks,
                     "the catalogue's projector size (approximate)" if extra else None)

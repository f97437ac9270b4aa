"""Which models to offer beside the loaded one: its family's sizes first, then the rest.

The Compare page offers the loaded model's family (Gemma 3 270M · 1B · 4B · 12B)
before every other installed model and the remote servers' models; a base model's
notice offers the nearest instruction-tuned model that is installed. Plain data,
no Qt: any front end can show it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from assistant import remotes
from common.errors import UserError
from models import catalogue, registry
from models.catalogue import CatalogueEntry

log = logging.getLogger(__name__)
STARTER = "starter"


@dataclass(frozen=True)
class ModelChoice:
    spec: str | None  # what -m takes (an installed name, MODEL@REMOTE); None: not installed
    label: str  # what a person calls it: "Gemma 3 1B"
    group: str  # "family", "installed" or "remote"
    is_base: bool = False  # continues text, does not follow instructions
    params: int | None = None

    @property
    def installed(self) -> bool:
        return self.spec is not None


def short_label(entry: CatalogueEntry) -> str:
    """'Gemma 3 1B' from 'Gemma 3 1B Instruct'; 'SmolLM2 135M' from 'SmolLM2 135M Instruct (built in)'."""
    label = entry.label.split(" (", 1)[0]
    return label.replace(" Instruct", "").strip() or entry.name


def _installed_by_entry() -> dict[str, str]:
    """catalogue base name -> the installed name that is it (the default quant when several are)."""
    found: dict[str, str] = {}
    for m in registry.list_installed():
        entry = registry.catalogue_entry(m.name) if m.source != "local" else None
        if entry is None:
            continue
        if entry.base_name not in found or entry.quant.upper() == entry.default_quant.upper():
            found[entry.base_name] = m.name
    return found


def compare_choices(loaded: str | None) -> list[ModelChoice]:
    """The loaded model's family sizes (installed or not), then every other installed model."""
    try:
        by_entry = _installed_by_entry()
        installed = registry.list_installed()
    except UserError as exc:  # an unreadable installed list: offer what can be known
        log.warning("could not read the installed models: %s", exc)
        by_entry, installed = {}, []
    choices: list[ModelChoice] = []
    taken: set[str] = set()
    entry = registry.catalogue_entry(loaded) if loaded else None
    own = entry.base_name if entry else None
    for size in catalogue.sizes_in_family(entry) if entry else []:
        spec = by_entry.get(size.base_name)
        if loaded and size.base_name == own:
            spec = loaded
        choices.append(ModelChoice(spec, short_label(size), "family", size.is_base, size.params))
        if spec:
            taken.add(spec)
    if loaded and loaded not in taken and loaded not in {m.name for m in installed}:
        # Loaded by path (or from a remote server): offered all the same, first of the rest.
        choices.append(ModelChoice(loaded, label_of(loaded), "installed"))
        taken.add(loaded)
    for m in installed:
        if m.name in taken:
            continue
        e = registry.catalogue_entry(m.name) if m.source != "local" else None
        label = short_label(e) if e else m.name
        choices.append(ModelChoice(m.name, label, "installed", m.is_base or bool(e and e.is_base),
                                   e.params if e else None))
    return choices


def remote_choices() -> tuple[list[ModelChoice], list[str]]:
    """Each remote server's models as MODEL@REMOTE, and a sentence per server that could not be asked.

    Talks to the servers: call it off the UI thread.
    """
    from assistant.engine.remote import LISTING_SECONDS, RemoteEngine

    choices, problems = [], []
    for remote in remotes.list_remotes():
        try:  # a listing beside others: a dead server gets a short wait
            offered = RemoteEngine(remote, remotes.get_key(remote.name)).list_models(timeout=LISTING_SECONDS)
        except UserError as exc:
            problems.append(str(exc))
            continue
        choices += [ModelChoice(f"{model}@{remote.name}", f"{model} on {remote.name}", "remote") for model in offered]
    return choices, problems


def instruct_alternative(loaded: str | None) -> str | None:
    """An installed instruction-tuned model to switch a base model for: the nearest size of its own family
    that is installed (the next bigger first), else the built-in starter."""
    entry = registry.catalogue_entry(loaded) if loaded else None
    if entry is not None:
        try:
            by_entry = _installed_by_entry()
        except UserError as exc:
            log.warning("could not read the installed models: %s", exc)
            by_entry = {}
        sizes = [s for s in catalogue.sizes_in_family(entry)
                 if not s.is_base and s.base_name in by_entry and s.base_name != entry.base_name]
        bigger = [s for s in sizes if s.params >= entry.params]
        for s in bigger + sorted(sizes, key=lambda s: -s.params):
            return by_entry[s.base_name]
    return STARTER if loaded != STARTER else None


def label_of(spec: str | None) -> str:
    """What a person calls an installed model (or spec): its catalogue label, else the name as it is."""
    if not spec:
        return ""
    entry = registry.catalogue_entry(spec) if "@" not in spec else None
    if entry is not None:
        return short_label(entry)
    return Path(spec).name if spec.lower().endswith(".gguf") else spec

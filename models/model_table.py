"""The fit and speed table: every installed model, every catalogue size and its other quants, sized up for this machine.

One table feeds every view that shows a model's fit verdict and speed (the window's
picker and its catalogue, `assistant models list`), so the same model shows the same
figure everywhere. A measured speed is one measured on a quiet CPU (models.speed's
rule); until one exists the figure is the estimate (`measured` false), and a speed
measured only while other programs held the CPU is kept apart, to be shown as busy. Building it reads model headers and, once a day, probes the memory
bandwidth: slow, so front ends build it off their UI thread (the library service does).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from common.formatting import format_byte_rate, format_bytes
from common.terminal import safe_text
from models import catalogue, fit, speed
from models.catalogue import CatalogueEntry
from models.library import InstalledIndex, ModelRow, installed_index, list_models
from models.shape import from_catalogue


@dataclass(frozen=True)
class Figure:
    """What a view shows for one catalogue model or quant: size, fit verdict and speed."""

    name: str  # the catalogue name: "gemma3-1b", "gemma3-1b:Q8_0"
    size_bytes: int | None
    size_approx: bool
    params: int | None
    verdict: str | None
    reason: str | None
    tokens_per_s: float | None
    measured: bool  # the speed was measured on this machine (else estimated)
    installed: str | None = None  # the installed name, if installed
    problem: str | None = None  # why the installed file cannot be used
    is_base: bool = False
    active_params: int | None = None  # a mixture of experts: parameters used per token
    busy_tokens_per_s: float | None = None  # measured only on a busy CPU: to show as busy, never as the speed


@dataclass(frozen=True)
class ModelTable:
    n_ctx: int | None
    rows: tuple[ModelRow, ...] = ()  # installed first, then the catalogue's sizes not installed
    figures: dict[str, Figure] = field(default_factory=dict)  # catalogue name -> Figure
    machine: str = ""  # this machine in one sentence (RAM, GPUs, bandwidth, the context sized for)

    def row(self, name: str) -> ModelRow | None:
        return next((r for r in self.rows if r.name == name), None)

    def figure(self, name: str) -> Figure | None:
        return self.figures.get(name)

    def size_figure(self, entry: CatalogueEntry, index: InstalledIndex) -> Figure | None:
        """The figure a family's size button shows: its installed quant's if one is installed, else the catalogue's."""
        installed = index.installed_size(entry)
        found = index.get(installed) if installed else None
        if found is not None and found.entry is not None and found.entry.name in self.figures:
            return self.figures[found.entry.name]
        return self.figures.get(entry.name)


def describe_machine(n_ctx: int | None, machine: fit.Machine, calib: speed.Calibration) -> str:
    gpus = ", ".join(f"{safe_text(g.name)} ({format_bytes(g.total)})" for g in machine.gpus) or "no GPU"
    return (f"This machine: {format_bytes(machine.total_ram)} RAM ({format_bytes(machine.available_ram)} free), "
            f"{gpus}, memory bandwidth {format_byte_rate(calib.bandwidth)} with {calib.curve.threads} threads; "
            f"sized for a {n_ctx or fit.DEFAULT_CTX}-token context.")


def _figure(name: str, r: ModelRow, installed: str | None) -> Figure:
    return Figure(name, r.size_bytes, r.size_approx and not installed, r.params, r.verdict, r.fit_reason,
                  r.tokens_per_s, r.speed_measured, installed, r.problem, r.is_base, r.active_params,
                  r.busy_tokens_per_s)


def model_table(n_ctx: int | None = None, *, quants: bool = True, index: InstalledIndex | None = None) -> ModelTable:
    """Build the table (slow: header reads, and the bandwidth probe the first time a day)."""
    index = index or installed_index()
    machine = fit.this_machine()
    calib = speed.calibration()
    rows = list_models(n_ctx, index=index, machine=machine, calib=calib)
    figures: dict[str, Figure] = {}
    for r in rows:
        if r.catalogue_name is not None:
            figures.setdefault(r.catalogue_name, _figure(r.catalogue_name, r, r.name if r.installed else None))
    if quants:
        for entry in catalogue.entries():
            if entry.is_starter:
                continue
            for q in entry.quants:
                other = entry.with_quant(q)
                if other is None or other.name in figures:
                    continue
                shape = from_catalogue(other)
                verdict = fit.fit(shape, n_ctx, machine)
                estimate = speed.estimate_speed(shape, calib=calib)
                figures[other.name] = Figure(other.name, shape.size_bytes, True, entry.params, verdict.verdict,
                                             verdict.reason, estimate.tokens_per_s, False,
                                             index.installed_as(other), None, entry.is_base, entry.active_params)
    return ModelTable(n_ctx, tuple(rows), figures, describe_machine(n_ctx, machine, calib))

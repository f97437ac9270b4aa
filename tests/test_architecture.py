"""The layering rules, checked on the real import graph."""

import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]


def test_import_linter_contracts_hold():
    proc = subprocess.run([str(Path(sys.prefix) / "bin" / "lint-imports"), "--no-cache"], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_only_the_engine_package_imports_llama_cpp():
    """One object owns the loaded model: no module outside assistant.engine may reach llama.cpp directly."""
    graph = grimp.build_graph("assistant", "models", "ui", "common", "llama_cpp")
    importers = graph.find_modules_that_directly_import("llama_cpp") | {
        m for sub in graph.find_children("llama_cpp") for m in graph.find_modules_that_directly_import(sub)
    }
    ours = {m for m in importers if m.split(".")[0] in ("assistant", "models", "ui", "common")}
    assert ours and all(m.startswith("assistant.engine.") for m in ours), sorted(ours)

"""`assistant models ...` end to end against a local Hub."""

import json

import pytest

from assistant.cli.main import main
from common.formatting import format_bytes
from models import registry
from tests.support.hub_server import hub, hub_env, medium_model_path  # noqa: F401 - fixtures


@pytest.fixture
def hub_repos(hub, medium_model_path, tiny_model_path):  # noqa: F811
    hub.add_repo("acme/medium-GGUF", {"medium-Q4_K_M.gguf": medium_model_path, "medium-Q8_0.gguf": tiny_model_path},
                 downloads=10)
    hub.add_repo("meta/gated-GGUF", {"g-Q4_K_M.gguf": tiny_model_path}, gated=True)
    return hub


def run(capsys, *argv):
    code = main(["models", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_list_shows_installed_models_and_the_catalogue(capsys):
    code, out, err = run(capsys, "list")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("This machine:") and "memory bandwidth" in lines[0]
    header = next(line for line in lines if line.startswith("NAME"))
    assert header.split() == ["NAME", "INSTALLED", "SIZE", "PARAMS", "QUANT", "CTX", "FIT", "TOK/S"]
    starter = next(line for line in lines if line.startswith("starter *"))
    assert "built in" in starter and "98.4 MB" in starter and "Q4_1" in starter and "8k" in starter
    assert "base model" not in starter
    gemma = next(line for line in lines if line.startswith("gemma3-270m-base "))
    assert "built in" in gemma and "253 MB" in gemma and "Q4_K_M" in gemma and "32k" in gemma
    assert gemma.endswith("base model: continues text, does not follow instructions")
    eight_b = next(line for line in lines if line.startswith("llama3.1-8b "))
    assert "4.9 GB" in eight_b and " 8B " in eight_b and "128k" in eight_b and "~" in eight_b
    assert any(v in eight_b for v in ("fits", "tight", "does not fit"))

    code, out, _ = run(capsys, "list", "--json", "--ctx", "2048")
    rows = json.loads(out)
    assert rows[0]["name"] == "starter" and rows[0]["installed"] and rows[0]["source"] == "starter"
    assert not rows[0]["is_base"] and rows[0]["base_label"] is None
    assert rows[1]["name"] == "gemma3-270m-base" and rows[1]["is_base"] and rows[1]["base_label"].startswith("base model")
    assert {r["name"] for r in rows} >= {"llama3.2-1b", "qwen3.5-4b", "gpt-oss-20b", "gemma4-e4b", "qwen2.5-14b"}
    assert all(r["verdict"] in ("fits", "tight", "does not fit") and r["tokens_per_s"] > 0 for r in rows)
    assert all(r["catalogue_revised"] == "2026-12-06" for r in rows)
    gpt = next(r for r in rows if r["name"] == "gpt-oss-20b")
    assert gpt["active_params"] == 3_610_000_000 and gpt["thinking"] == "harmony" and not gpt["sees_images"]
    assert next(r for r in rows if r["name"] == "qwen3.5-4b")["sees_images"]
    older = [r["older"] for r in rows if not r["installed"]]
    assert older == sorted(older)  # the older families after the current ones


def test_list_says_when_the_catalogue_was_revised_and_shows_active_parameters(capsys):
    code, out, err = run(capsys, "list")
    assert code == 0, err
    assert "The catalogue was last revised on 2026-12-06" in out
    gpt = next(line for line in out.splitlines() if line.startswith("gpt-oss-20b "))
    assert "21B, 3.6B active" in gpt and "MXFP4" in gpt


def test_fit_shows_the_parts_by_architecture(capsys, monkeypatch, hub_env):  # noqa: F811
    import huggingface_hub.constants  # noqa: F401 - imported online first: it reads HF_HUB_OFFLINE once, at import

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # from the catalogue: no Hub here
    code, out, err = run(capsys, "fit", "gpt-oss-20b")
    assert code == 0, err
    assert "21B, 3.6B active parameters" in out and "12 of 24 layers window-sized" in out
    assert "(4 of 32 experts;" in next(line for line in out.splitlines() if line.startswith("Reads "))

    code, out, err = run(capsys, "fit", "gemma3-12b", "--ctx", "131072")
    assert code == 0, err
    kv = next(line for line in out.splitlines() if line.strip().startswith("KV cache"))
    assert "f16; 40 of 48 layers window-sized" in kv and "GB" in kv
    assert "its shape is approximate" not in out

    code, out, err = run(capsys, "fit", "qwen3.5-4b")
    assert code == 0, err
    assert any(line.strip().startswith("recurrent state") and "24 linear-attention layers" in line
               for line in out.splitlines())
    assert "8 attention layers of 32" in out and "its shape is approximate" in out

    code, out, _ = run(capsys, "fit", "llama3.1-8b", "--json")
    f16 = json.loads(out)["memory"]
    code, out, _ = run(capsys, "fit", "llama3.1-8b", "--json", "--kv-cache-type", "q8_0")
    q8 = json.loads(out)["memory"]
    assert q8["kv_cache_type"] == "q8_0" and q8["kv_cache"] / f16["kv_cache"] == pytest.approx(34 / 64)
    code, out, _ = run(capsys, "fit", "llama3.1-8b", "--kv-cache-type", "q4_0")
    assert "q4_0; every layer" in out


def test_search_pull_use_and_remove(capsys, hub_repos):
    code, out, err = run(capsys, "search", "medium")
    assert code == 0, err
    assert "acme/medium-GGUF" in out and "Q4_K_M 14.4 MB" in out and "Q8_0" in out

    code, out, err = run(capsys, "pull", "acme/medium-GGUF:Q4_K_M")
    assert code == 0, err
    assert "Pulling acme/medium-GGUF:Q4_K_M" in out and "SHA-256 verified" in out
    assert "Installed as acme/medium-GGUF:Q4_K_M" in out
    assert "100% of 14.4 MB" in err  # progress, one line per 10% when not on a terminal
    assert registry.resolve("acme/medium-GGUF:Q4_K_M").source == "hub"

    code, out, _ = run(capsys, "pull", "acme/medium-GGUF:Q4_K_M")
    assert code == 0 and "already installed" in out

    code, out, _ = run(capsys, "list", "--installed")
    assert any(line.startswith("acme/medium-GGUF:Q4_K_M ") and " yes " in line for line in out.splitlines())

    code, out, _ = run(capsys, "fit", "acme/medium-GGUF:Q4_K_M", "--ctx", "1024")
    assert code == 0 and "from the installed file" in out and "KV cache" in out and "Verdict: fits" in out

    code, out, _ = run(capsys, "rm", "acme/medium-GGUF:Q4_K_M")
    assert code == 0 and "freed 14.4 MB" in out
    assert registry.get("acme/medium-GGUF:Q4_K_M") is None


def test_fit_before_download_reads_the_remote_header(capsys, hub_repos):
    code, out, err = run(capsys, "fit", "acme/medium-GGUF:Q4_K_M", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["shape_from"].startswith("remote header") and report["verdict"] == "fits"
    parts = report["memory"]
    assert parts["total"] == (parts["weights"] + parts["kv_cache"] + parts["recurrent_state"] + parts["compute"]
                              + parts["overhead"])
    assert report["model"]["layers"] > 0 and report["tokens_per_s"] > 0 and not report["speed_measured"]
    assert hub_repos.body_bytes_served() < 3_000_000  # a header, not the 14 MB file


def test_import_and_rm_of_a_local_file_keeps_the_file(capsys, tiny_model_path):
    code, out, _ = run(capsys, "import", str(tiny_model_path), "--name", "mine")
    assert code == 0 and "as mine (not copied)" in out
    assert registry.resolve("mine").path == str(tiny_model_path.resolve())
    code, out, _ = run(capsys, "rm", "mine")
    assert code == 0 and "left where it is" in out and tiny_model_path.exists()


def test_errors_are_one_line(capsys, hub_repos, tmp_path, monkeypatch):
    for argv, text in [
        (["pull", "meta/gated-GGUF:Q4_K_M"], "gated model"),
        (["pull", "no-such-model"], "neither in the catalogue"),
        (["pull", "llama3.2-1b:Q9_X"], "has no Q9_X quant"),
        (["pull", "acme/medium-GGUF:Q2_K"], "has no Q2_K file"),
        (["rm", "starter"], "built in"),
        (["rm", "nothing"], "No installed model"),
        (["import", str(tmp_path / "missing.gguf")], "does not exist"),
    ]:
        code, out, err = run(capsys, *argv)
        assert code == 1, argv
        assert err.startswith("error: ") and text in err and err.count("\n") == 1, err
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, out, err = run(capsys, "pull", "qwen2.5-0.5b")
    assert code == 1 and "Offline mode is on" in err and out == ""


def test_a_pull_stopped_with_ctrl_c_is_paused_listed_and_resumed(capsys, hub_repos, medium_model_path, hub_env):  # noqa: F811
    """The pull runs in a child process, as a user's would; Ctrl-C there is SIGINT."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    hub_repos.throttle_bps = 3e6
    size = medium_model_path.stat().st_size
    root = Path(__file__).resolve().parents[1]
    child = subprocess.Popen([sys.executable, "-m", "assistant.cli.main", "models", "pull", "acme/medium-GGUF:Q4_K_M"],
                             cwd=root, env={**os.environ}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    blobs = hub_env / "hub" / "models--acme--medium-GGUF" / "blobs"
    deadline = time.monotonic() + 60
    while not any(p.stat().st_size > 1_000_000 for p in blobs.glob("*.incomplete")):
        assert time.monotonic() < deadline and child.poll() is None, child.communicate()
        time.sleep(0.05)
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=30)
    assert child.returncode == 130, err
    assert "Paused acme/medium-GGUF:Q4_K_M at " in err and "`assistant models pull acme/medium-GGUF:Q4_K_M` resumes it" in err
    assert "Traceback" not in err
    (partial,) = blobs.glob("*.incomplete")
    kept = partial.stat().st_size
    assert 1_000_000 < kept < size

    code, out, err = run(capsys, "downloads")
    assert code == 0, err
    row = next(line for line in out.splitlines() if line.startswith("acme/medium-GGUF:Q4_K_M "))
    assert " paused " in row and f"of {format_bytes(size)}" in row and "acme/medium-GGUF/medium-Q4_K_M.gguf" in row
    code, out, _ = run(capsys, "downloads", "--json")
    (listed,) = json.loads(out)
    assert listed["status"] == "paused" and listed["done"] == kept

    hub_repos.throttle_bps = None
    code, out, err = run(capsys, "pull", "acme/medium-GGUF:Q4_K_M")  # the next pull resumes it
    assert code == 0, err
    assert f"Resuming from the {format_bytes(kept)} an earlier pull kept." in out
    assert f"resumed from {format_bytes(kept)}; SHA-256 verified" in out
    assert hub_repos.file_requests("medium-Q4_K_M.gguf")[-1].range == f"bytes={kept}-"
    assert registry.get("acme/medium-GGUF:Q4_K_M") is not None
    code, out, _ = run(capsys, "downloads")
    assert out.strip() == "No paused or unfinished downloads."


def test_downloads_resume_and_discard(capsys, hub_repos, hub_env):
    from models import download_manager as dm

    hub_repos.throttle_bps = 3e6
    manager = dm.DownloadManager()
    manager.start("acme/medium-GGUF:Q4_K_M")
    while manager.get("acme/medium-GGUF:Q4_K_M").done < 500_000:
        manager.wait("acme/medium-GGUF:Q4_K_M", timeout=0.05)
    manager.shutdown()
    hub_repos.throttle_bps = None

    code, out, err = run(capsys, "downloads", "discard", "nothing")
    assert code == 1 and "No paused download is named 'nothing'" in err
    code, out, err = run(capsys, "downloads", "resume", "acme/medium-GGUF:Q4_K_M")
    assert code == 0 and "Installed as acme/medium-GGUF:Q4_K_M" in out, err

    manager = dm.DownloadManager()
    manager.start("acme/medium-GGUF:Q8_0")
    manager.pause("acme/medium-GGUF:Q8_0")
    manager.shutdown()
    code, out, err = run(capsys, "downloads", "discard", "--all")
    assert code == 0 and "Discarded acme/medium-GGUF:Q8_0" in out, err
    assert not list((hub_env / "hub").glob("models--*/blobs/*.incomplete"))
    code, out, _ = run(capsys, "downloads")
    assert "No paused or unfinished downloads." in out

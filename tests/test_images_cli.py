"""Issue 22 at the command line, run as a user runs it (a real process, the real runner): `chat --image`,
each bad image as one sentence with a non-zero exit and nothing saved, a model that cannot see, and the
model commands that know about projectors (`models import --projector`, `models list`, `models fit`)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.tiny_vision import TOKENS_PER_IMAGE, bad_images, png_bytes, write_tiny_vision_model

pytestmark = pytest.mark.llama_cpp

ROOT = Path(__file__).resolve().parents[1]


def run(*args, home: Path, timeout=180) -> subprocess.CompletedProcess:
    env = dict(os.environ, ASSISTANT_HOME=str(home), PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "assistant.cli.main", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT)


@pytest.fixture(scope="module")
def vision_model(tmp_path_factory):
    return write_tiny_vision_model(tmp_path_factory.mktemp("vision"))


@pytest.fixture
def home(tmp_path):
    return tmp_path / "home"


def chat(model, home, *extra):
    return run("chat", "-m", str(model), "-t", "1", "-n", "4", "--seed", "1", *extra, home=home)


def saved(home) -> int:
    proc = run("history", "list", home=home)
    return 0 if "No saved conversations" in proc.stdout or not proc.stdout.strip() else len(proc.stdout.strip().splitlines())


def test_chat_with_images_answers_and_prints_their_cost(vision_model, home, tmp_path):
    model, _ = vision_model
    (tmp_path / "a.png").write_bytes(png_bytes(48, 32, (200, 0, 0)))
    (tmp_path / "b.png").write_bytes(png_bytes(32, 48, (0, 0, 200)))
    proc = chat(model, home, "--image", str(tmp_path / "a.png"), "--image", str(tmp_path / "b.png"), "What are these?")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(f"2 images · {2 * TOKENS_PER_IMAGE} tokens · ")
    proc = chat(model, home, "--json", "--image", str(tmp_path / "a.png"), "And this one?")
    record = json.loads(proc.stdout)
    assert record["images"]["count"] == 1 and record["images"]["tokens"] == TOKENS_PER_IMAGE
    assert record["images"]["encode_ms"] > 0 and record["images"]["projector_bytes"] > 0
    # Saved with its image, shown by name in the history.
    shown = run("history", "show", str(record["conversation_id"]), home=home).stdout
    assert "[image: a.png]" in shown


@pytest.mark.parametrize("kind", sorted(bad_images()))
def test_each_bad_image_is_one_sentence_a_failure_and_nothing_saved(vision_model, home, tmp_path, kind):
    data, word = bad_images()[kind]
    bad = tmp_path / "photo.png"
    bad.write_bytes(data)
    proc = chat(vision_model[0], home, "--image", str(bad), "What is this?")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: The image 'photo.png'") and word in lines[0]
    assert saved(home) == 0


def test_an_image_for_a_model_that_cannot_see_is_one_sentence_and_a_failure(home, tmp_path, tiny_model_path):
    (tmp_path / "a.png").write_bytes(png_bytes())
    proc = run("chat", "-m", str(tiny_model_path), "-t", "1", "-n", "4", "--chat-format", "chatml",
               "--image", str(tmp_path / "a.png"), "What is this?", home=home)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "error: tiny cannot see images: it has no image projector. Choose a model marked as seeing images, or send "
        "the message without them."]
    assert saved(home) == 0


def test_models_import_takes_a_projector_and_the_list_and_fit_count_it(vision_model, home, tmp_path):
    model, projector = vision_model
    # Beside it: found on its own.
    proc = run("models", "import", str(model), "--name", "seeing", home=home)
    assert proc.returncode == 0 and "sees images through" in proc.stdout
    # Elsewhere: named with --projector.
    elsewhere = tmp_path / "other"
    elsewhere.mkdir()
    (elsewhere / "model.gguf").write_bytes(model.read_bytes())
    proc = run("models", "import", str(elsewhere / "model.gguf"), "--name", "named",
               "--projector", str(projector), home=home)
    assert proc.returncode == 0 and str(projector.absolute()) in proc.stdout
    proc = run("models", "import", str(elsewhere / "model.gguf"), "--name", "wrong", "--projector",
               str(elsewhere / "model.gguf"), home=home)
    assert proc.returncode == 1 and "not an image projector" in proc.stderr
    listing = run("models", "list", "--installed", home=home).stdout
    assert all("sees images" in line for line in listing.splitlines() if line.startswith(("seeing", "named")))
    fit = run("models", "fit", "named", "--json", home=home)
    memory = json.loads(fit.stdout)["memory"]
    assert memory["projector"] > 0 and memory["total"] == sum(
        memory[k] for k in ("weights", "kv_cache", "compute", "overhead", "projector"))
    assert "image projector" in run("models", "fit", "named", home=home).stdout
    # And it sees through it.
    (tmp_path / "a.png").write_bytes(png_bytes())
    proc = run("chat", "-m", "named", "-t", "1", "-n", "4", "--image", str(tmp_path / "a.png"), "Hi", home=home)
    assert proc.returncode == 0, proc.stderr


def test_history_export_puts_images_beside_the_file_and_import_reads_them_back(vision_model, home, tmp_path):
    (tmp_path / "a.png").write_bytes(png_bytes())
    assert chat(vision_model[0], home, "--image", str(tmp_path / "a.png"), "Look").returncode == 0
    out = tmp_path / "export" / "chat.json"
    out.parent.mkdir()
    proc = run("history", "export", "-o", str(out), "--images", "files", home=home)
    assert proc.returncode == 0 and "1 image to" in proc.stderr
    other = tmp_path / "other-home"
    proc = run("history", "import", str(out), home=other)
    assert proc.returncode == 0 and "Imported 1 conversation" in proc.stdout
    assert "[image: a.png]" in run("history", "show", "1", home=other).stdout

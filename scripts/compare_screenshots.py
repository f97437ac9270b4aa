"""Render the Compare page, light and dark, with real answers, into docs/screenshots/compare-*.png.

    .venv/bin/python scripts/compare_screenshots.py

Everything shown is real: the two built-in models (SmolLM2 135M Instruct and Gemma
3 270M base) answer on the real engine, each in its own process, and the figures
are the measured ones. The verdicts are the ones a person would give these answers.
Runs offscreen in a temporary ASSISTANT_HOME, so it touches none of your data.
"""

import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
HOME = tempfile.mkdtemp(prefix="hearth-compare-shots-")
os.environ["ASSISTANT_HOME"] = HOME
OUT = ROOT / "docs" / "screenshots"

SET = ["What is the capital of France? Answer in one word.", "What is 2 + 2?", "How many days are in a week?"]
PROMPT = "Why is the sky blue? Answer in two sentences."


def main() -> int:
    from PySide6.QtWidgets import QApplication

    from assistant.services import AppServices
    from ui.main_window import MainWindow
    from ui.theme import apply_theme

    OUT.mkdir(parents=True, exist_ok=True)
    app = QApplication.instance() or QApplication([])
    apply_theme(app, "light")
    window = MainWindow(AppServices.open())
    window.resize(1280, 820)
    window.show()

    def pump(until, timeout=300):
        end = time.monotonic() + timeout
        while time.monotonic() < end and not until():
            app.processEvents()
            time.sleep(0.005)

    window.load_model("starter")
    pump(lambda: bool(window.model))
    window.defaults.update(max_tokens=64, temperature=0.0, seed=1)
    window.show_compare()
    page = window.compare_page
    page.set_checked(["starter", "gemma3-270m-base"])

    def finished(start):
        done = []
        page.runFinished.connect(done.append)
        start()
        pump(lambda: bool(done), 600)
        page.runFinished.disconnect()
        return done[0]

    # A prompt set of everyday questions, judged as a person would: the instruction-tuned model answers them,
    # the base model continues the text.
    window.history.save_prompt_set("Everyday questions", SET)
    page.refresh_sets()
    batch = finished(page.run_set)
    for p, row in enumerate(batch.answers):
        for m, answer in enumerate(row):
            if answer and answer.answer_id:
                right = ("Paris", "4", "7")[p] in answer.text and m == 0
                window.history.set_verdict(answer.answer_id, "good" if right else "not_good")

    page.prompt_edit.setPlainText(PROMPT)
    single = finished(page.start)
    page.show_saved(single.comparison_ids[0])
    starter, gemma = page.columns
    page._best(starter, True)
    page._verdict(gemma, "not_good")
    pump(lambda: window.model.get("name") == "starter", 120)  # the user's own model, put back
    page.refresh_models()
    pump(lambda: False, 0.5)
    window.grab().save(str(OUT / "compare-light.png"))

    window.set_theme("dark")
    pump(lambda: False, 0.5)
    window.grab().save(str(OUT / "compare-dark.png"))
    print(page.summary.text())
    window.close()
    print(f"wrote compare-light.png and compare-dark.png to {OUT}")
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)  # see scripts/screenshots.py: PySide's teardown at interpreter exit can crash

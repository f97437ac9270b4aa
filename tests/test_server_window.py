"""The local server switched on from the real window: API clients and the window share the model and the queue,
the page shows each request live, and the window stays responsive while the API streams."""

from __future__ import annotations

import threading
import time

import httpx
import openai
import pytest
from PySide6.QtCore import QTimer

from assistant.engine import LoadSettings, LocalEngine
from assistant.server.config import saved_settings
from assistant.server.controller import bind
from tests.support.tiny_gguf import write_tiny_llama
from tests.support.window import open_window

pytestmark = pytest.mark.llama_cpp


def _free_port() -> int:
    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    sock.close()
    return port


def test_the_window_serves_the_api_shows_each_request_and_stays_responsive(qtbot, tmp_path):
    model = write_tiny_llama(tmp_path / "tiny-long.gguf", n_ctx=4096, name="tiny-long")  # room for a long stream
    window = open_window(qtbot, tmp_path, LocalEngine())
    window.show()
    with qtbot.waitSignal(window.bridge.modelLoaded, timeout=60_000):
        window.load_model(str(model), LoadSettings(n_threads=1))

    window.server_action.trigger()
    page = window.server_page
    assert window.pages.currentWidget() is page and not page.serving and page.key.text().startswith("sk-")
    page.port.setValue(_free_port())
    with qtbot.waitSignal(page.stateChanged, timeout=20_000) as switched:
        page.switch.click()
    assert switched.args == [True] and page.serving and "Server on" in page.status_label.text()
    url, key = page.url.text(), page.key.text()
    assert url == f"http://127.0.0.1:{page.port.value()}/v1" and saved_settings(window.settings_store)["enabled"]

    # Without the key the window's server refuses; the refusal shows in the log too.
    assert httpx.get(url + "/models").status_code == 401

    outcome: dict = {}

    def api_client() -> None:
        client = openai.OpenAI(base_url=url, api_key=key, max_retries=0, timeout=120)
        stream = client.chat.completions.create(model="tiny-long", messages=[{"role": "user", "content": "Go on."}],
                                                max_tokens=1200, stream=True, extra_body={"ignore_eos": True},
                                                stream_options={"include_usage": True})
        outcome["chunks"] = list(stream)

    gaps: list[float] = []
    last = [time.perf_counter()]

    def tick() -> None:
        now = time.perf_counter()
        gaps.append(now - last[0])
        last[0] = now

    timer = QTimer()
    timer.timeout.connect(tick)
    timer.start(10)
    thread = threading.Thread(target=api_client)
    thread.start()
    # While it streams, the page shows it, and the window's own turn takes its place in the same queue.
    qtbot.waitUntil(lambda: "streaming" in _last_row(page)[-1], timeout=30_000)
    assert "1 request in progress" in page.status_label.text()
    window.input.edit.setPlainText("Hello from the window")
    window.defaults["max_tokens"] = 4
    with qtbot.waitSignal(window.bridge.turnFinished, timeout=60_000,
                          check_params_cb=lambda e: e.request_id == window._turn.id if window._turn else True):
        window.send(window.input.edit.toPlainText())
    qtbot.waitUntil(lambda: not thread.is_alive(), timeout=60_000)
    timer.stop()

    assert outcome["chunks"][-1].usage.completion_tokens == 1200
    assert max(gaps) < 1.0, f"the window froze for {max(gaps):.2f} s while the API streamed"
    time_, client, model_name, tokens, tps, status = _row(page, _api_row(page))
    assert client.startswith("127.0.0.1:") and model_name == "tiny-long" and tokens == "1200"
    assert float(tps) > 0 and status == "done"
    assert window.chat.widgets  # the window's reply is there

    with qtbot.waitSignal(page.stateChanged, timeout=20_000) as off:
        page.switch.click()
    assert off.args == [False] and not page.serving and not saved_settings(window.settings_store)["enabled"]
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + "/models", headers={"Authorization": f"Bearer {key}"})
    window.close()


def test_a_server_left_on_starts_with_the_window_and_a_busy_port_is_one_sentence(qtbot, tmp_path):
    from assistant.server.config import save_settings
    from tests.support.fake_engine import FakeEngine
    from tests.support.window import open_services
    from ui.main_window import MainWindow

    taken = bind("127.0.0.1", 0)
    try:
        services = open_services(tmp_path, FakeEngine())
        save_settings(services.settings, enabled=True, port=taken.getsockname()[1])
        window = MainWindow(services)
        qtbot.addWidget(window)
        qtbot.waitUntil(lambda: not window.server_page.busy, timeout=20_000)
        page = window.server_page
        assert not page.serving and not page.switch.isChecked() and "already in use" in page.state.text()
        assert page.switch.isEnabled()
    finally:
        taken.close()
    with qtbot.waitSignal(page.stateChanged, timeout=20_000) as on:
        page.switch.click()  # the port is free now
    assert on.args == [True] and page.serving
    window.close()  # stops the server with the window
    assert not page.serving


def _row(page, row: int) -> list[str]:
    return [page.table.item(row, c).text() if page.table.item(row, c) else "" for c in range(page.table.columnCount())]


def _last_row(page) -> list[str]:
    return _row(page, page.table.rowCount() - 1) if page.table.rowCount() else [""]


def _api_row(page) -> int:
    return next(r for r in range(page.table.rowCount()) if _row(page, r)[2] == "tiny-long")

"""A remote server that takes seconds to answer never freezes the window: adding it, testing it and
listing its models run off the GUI thread, and the event loop keeps turning meanwhile."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PySide6.QtCore import QTimer

from tests.test_ui_models import idle, make_window, open_manager  # noqa: F401 - make_window is a fixture
from ui.model_manager import REMOTES_TAB

DELAY_S = 3.0


class _Slow(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        time.sleep(DELAY_S)
        body = b'{"object": "list", "data": [{"id": "big", "object": "model"}]}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def slow_server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Slow)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


class _StallMeter:
    """The longest gap between ticks of a 10 ms timer: how long the event loop was blocked."""

    def __init__(self):
        self.last = time.perf_counter()
        self.longest = 0.0
        self.timer = QTimer()
        self.timer.setInterval(10)
        self.timer.timeout.connect(self._tick)
        self.timer.start()

    def _tick(self):
        now = time.perf_counter()
        self.longest = max(self.longest, now - self.last)
        self.last = now


def test_a_slow_server_does_not_freeze_the_window(qtbot, make_window, slow_server):
    window = make_window()
    dialog = open_manager(qtbot, window)
    dialog.tabs.setCurrentIndex(REMOTES_TAB)
    page = dialog.remotes
    page.name_edit.setText("slow")
    page.url_edit.setText(slow_server)
    meter = _StallMeter()
    started = time.perf_counter()
    page.add_button.click()
    qtbot.wait(int(DELAY_S * 1000))  # the server is still thinking: the window is not
    assert meter.longest < 0.5, f"the event loop stalled {meter.longest * 1000:.0f} ms"
    idle(qtbot, window)
    assert time.perf_counter() - started >= DELAY_S
    assert page.servers.topLevelItemCount() == 1

    meter.longest = 0.0
    page.servers.setCurrentItem(page.servers.topLevelItem(0))
    page.test_button.click()
    qtbot.waitUntil(lambda: "ms away" in page.result.text(), timeout=30_000)
    assert "big@slow" in page.result.text()
    assert meter.longest < 0.5, f"the event loop stalled {meter.longest * 1000:.0f} ms while testing"
    meter.timer.stop()

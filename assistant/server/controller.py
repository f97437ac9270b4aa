"""Starting and stopping the API server: in a background thread for the window, in the foreground for the CLI.

uvicorn serves the app. The controller binds the socket itself, so a port in use
is one sentence before anything starts, and port 0 picks a free one. Stopping
cancels the API's turns first (their streams end within a token), then uvicorn
closes its connections; the window's own turns go on.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from assistant.engine import GenerationSettings, LoadSettings
from assistant.preferences import generation_settings, load_preferences
from assistant.preferences import load_settings as preference_load_settings
from assistant.server.config import ServerConfig, ServerConfigError
from assistant.server.request_log import RequestLog
from assistant.server.turns import TurnRouter

log = logging.getLogger(__name__)
START_TIMEOUT_S = 15.0
GRACEFUL_SHUTDOWN_S = 5


class ServerController:
    def __init__(self, services: Any, config: ServerConfig, *, request_log: RequestLog | None = None,
                 default_settings: Callable[[], GenerationSettings] | None = None,
                 load_settings: Callable[[], LoadSettings | None] | None = None) -> None:
        """`services`: an AppServices (chat, history, settings)."""
        self.services = services
        self.config = config
        self.request_log = request_log or RequestLog()
        store = getattr(services, "settings", None)
        self._default_settings = default_settings or (
            (lambda: generation_settings(load_preferences(store))) if store is not None else GenerationSettings)
        self._load_settings = load_settings or (
            (lambda: preference_load_settings(load_preferences(store))) if store is not None else (lambda: None))
        self._server: Any = None  # the uvicorn.Server while running
        self._thread: threading.Thread | None = None
        self._router: TurnRouter | None = None
        self._socket: socket.socket | None = None
        self.port: int | None = None
        self.connections: Any = None  # the ConnectionBook while serving

    # --- State
    @property
    def running(self) -> bool:
        """True while it accepts connections."""
        return self._server is not None and self._server.started and not self._server.should_exit

    @property
    def url(self) -> str:
        """The base URL clients use (the OpenAI clients' `base_url`)."""
        return self.config.base_url(self.port)

    def active_requests(self) -> int:
        return self._router.active() if self._router is not None else 0

    # --- Running
    def prepare(self) -> None:
        """Check the settings and bind the port now (one sentence if either fails); serving starts later."""
        if self._server is None:
            self._prepare()

    def start(self) -> str:
        """Serve in a background thread; returns the URL once it accepts connections."""
        if self._thread is not None:
            return self.url
        self.prepare()
        server, sock = self._server, self._socket
        assert sock is not None
        errors: list[BaseException] = []

        def run() -> None:
            try:
                asyncio.run(server.serve(sockets=[sock]))
            except BaseException as exc:  # SystemExit from uvicorn's start-up included: reported to start()
                log.exception("the API server stopped with an error")
                errors.append(exc)
            finally:
                sock.close()

        self._thread = threading.Thread(target=run, name="api-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not server.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        if not server.started:
            self.stop()
            raise ServerConfigError(f"The API server did not start ({errors[0] if errors else 'no answer'}).")
        log.info("API server listening on %s", self.url)
        return self.url

    def serve_forever(self, on_ready: Callable[[str], None] | None = None) -> None:
        """Serve in this thread until Ctrl-C or SIGTERM (the main thread: uvicorn handles both)."""
        self.prepare()
        server, sock = self._server, self._socket
        assert sock is not None
        if on_ready is not None:
            on_ready(self.url)
        try:
            server.run(sockets=[sock])
        except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it handled, once it has stopped cleanly
            pass
        finally:
            sock.close()
            self._finish()

    def stop(self, timeout: float = GRACEFUL_SHUTDOWN_S + 5) -> None:
        """Stop serving: the API's turns are cancelled, connections close; safe to call twice."""
        server, thread = self._server, self._thread
        if server is None:
            return
        if self._router is not None:
            self._router.cancel_all()
        server.should_exit = True
        if thread is None and self._socket is not None:  # prepared, never served
            self._socket.close()
        elif thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                log.warning("the API server did not stop within %.0f s", timeout)
                server.force_exit = True
                thread.join(2)
        self._finish()

    # --- Internals
    def _prepare(self) -> None:
        # Late: the window imports this module at start-up, before anyone turns the server on (~0.1 s saved).
        import uvicorn

        from assistant.server.app import ServerContext, create_app
        from assistant.server.connections import IDLE_SECONDS, ConnectionBook, connection_limit, guarded_protocol

        self.config.check()
        sock = bind(self.config.host, self.config.port)
        self.port = sock.getsockname()[1]
        router = TurnRouter(self.services.chat)
        context = ServerContext(chat=self.services.chat, config=self.config, router=router,
                                request_log=self.request_log, settings=getattr(self.services, "settings", None),
                                history=getattr(self.services, "history", None),
                                default_settings=self._default_settings, load_settings=self._load_settings)
        self.connections = ConnectionBook(total=connection_limit())
        uv_config = uvicorn.Config(
            create_app(context), log_config=None, access_log=False,  # our request log; it never holds a key
            # h11, with a head deadline, per-client limits that evict idle connections, and JSON refusals
            # (assistant/server/connections.py) instead of uvicorn's plain-text 503 past limit_concurrency.
            http=guarded_protocol(self.connections), ws="none", lifespan="off", loop="asyncio", server_header=False,
            proxy_headers=False,  # no proxy in front: a local client must not rewrite its address in the log
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S, timeout_keep_alive=IDLE_SECONDS, limit_concurrency=None)
        self._router, self._socket = router, sock
        self._server = _Uvicorn(uv_config, router)

    def _finish(self) -> None:
        if self._router is not None:
            self._router.cancel_all()
            self._router.close()
        self._server, self._thread, self._router, self._socket = None, None, None, None


def _Uvicorn(config: Any, router: TurnRouter) -> Any:
    """uvicorn, stopping the API's turns first so that streams end at once rather than after a whole reply."""
    import uvicorn

    class Uvicorn(uvicorn.Server):
        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            router.cancel_all()
            await super().shutdown(sockets=sockets)

    return Uvicorn(config)


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port, or one sentence saying why not."""
    try:
        infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        raise ServerConfigError(f"{host} is not an address this machine can listen on ({exc}).") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a port in TIME_WAIT, not one in use
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno in (98, 48, 10048):  # EADDRINUSE on Linux, macOS, Windows
            raise ServerConfigError(f"Port {port} on {host} is already in use (another server, or Hearth running "
                                    "twice); choose another port.") from None
        raise ServerConfigError(f"The server cannot listen on {host}:{port} ({exc.strerror or exc}).") from None
    return sock

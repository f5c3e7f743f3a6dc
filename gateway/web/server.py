"""Run the Flask app under waitress in its own thread, stoppable from the daemon."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from gateway.errors import GatewayError

log = logging.getLogger(__name__)

# Open sockets cost no thread (waitress holds them in one select loop, and closes idle ones after
# channel_timeout): this bounds only file descriptors. The unit's LimitNOFILE leaves room for it.
CONNECTION_LIMIT = 1024
APP_WAIT_S = 30.0  # how long a request made during start-up waits for the page's app


class WebServer:
    """waitress serving ``app`` on ``host:port`` (port 0 picks a free one) in a daemon thread."""

    def __init__(self, app: Any, host: str, port: int, *, streams: int = 64, request_threads: int = 16,
                 max_body: int = 256 * 1024, stop: threading.Event | None = None) -> None:
        # Each open page holds one thread for its event stream. The app admits at most ``streams`` of
        # them (see web/guard.py), so ``request_threads`` always remain for the page, the API and
        # /healthz, whatever the streams do.
        self.stop_streams = stop or threading.Event()
        from waitress.server import create_server

        self.app = app
        # Run on the request's own thread once its answer is sent (the box gives back the thread's
        # spool connection: a request may land on any of the server's threads).
        self.after_request: Callable[[], None] | None = None
        self._app_set = threading.Event()
        try:
            self._server = create_server(self._dispatch, host=host, port=port, threads=streams + request_threads,
                                         channel_timeout=30, ident="trackside-gateway",
                                         max_request_body_size=max_body, connection_limit=CONNECTION_LIMIT)
        except OSError as exc:
            raise GatewayError(
                f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                where="web", hint="another program uses that port; stop it or set web.port",
            ) from None
        self._thread = threading.Thread(target=self._run, name="web-server", daemon=True)

    def _dispatch(self, environ: dict[str, Any], start_response: Any) -> Any:
        app = self.app
        if app is None:  # listening before the app is built (start-up): wait for it
            self._app_set.wait(APP_WAIT_S)
            app = self.app
            if app is None:
                start_response("503 Service Unavailable", [("Content-Type", "text/plain; charset=utf-8"),
                                                           ("Retry-After", "2")])
                return [b"the gateway is starting; try again in a moment\n"]
        if self.after_request is None:
            return app(environ, start_response)
        try:
            body = app(environ, start_response)
        except BaseException:
            self.after_request()
            raise
        from werkzeug.wsgi import ClosingIterator

        return ClosingIterator(body, self.after_request)

    def set_app(self, app: Any) -> None:
        self.app = app
        self._app_set.set()

    @property
    def port(self) -> int:
        return int(self._server.effective_port)

    @property
    def host(self) -> str:
        return str(self._server.effective_host)

    def start(self) -> None:
        self._thread.start()
        log.info("page on http://%s:%d/", self.host, self.port)

    def _run(self) -> None:
        # close() from another thread ends the asyncore loop with EBADF: that is our stop.
        with contextlib.suppress(OSError):
            self._server.run()

    def stop(self, timeout: float = 5.0) -> None:
        self.stop_streams.set()  # event streams end within a second
        # Let the streams finish their responses while waitress can still wake its loop (close()
        # closes that trigger, and a task finishing afterwards would fail on it).
        dispatcher = getattr(self._server, "task_dispatcher", None)
        deadline = time.monotonic() + 2.0
        while dispatcher is not None and dispatcher.active_count and time.monotonic() < deadline:
            time.sleep(0.05)
        self._server.close()
        task_dispatcher = getattr(self._server, "task_dispatcher", None)
        if task_dispatcher is not None:
            task_dispatcher.shutdown(cancel_pending=True, timeout=timeout)
        # Open client connections keep waitress's loop alive: close them so its thread ends.
        for channel in list(getattr(self._server, "_map", {}).values()):
            with contextlib.suppress(OSError):
                channel.close()
        if self._thread.is_alive():
            self._thread.join(timeout)

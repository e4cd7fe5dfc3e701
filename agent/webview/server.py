"""The live page: a read-only HTTP server on 127.0.0.1 (a random free port) for one `Page`.

GET `/` is the page (with its poller), `/version` what the poller compares, and relative paths
the page links to (an evaluation's run pages and logs). Nothing else is served and no method
but GET (and HEAD) is answered. The Host header must name the loopback address, so a web page
elsewhere cannot reach the server by rebinding a DNS name to 127.0.0.1.
"""

from __future__ import annotations

import os
import sys
import threading
import webbrowser
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

from agent.webview.page import CSP, LIVE_VERSION_PATH
from agent.webview.pages import Page

__all__ = ["LiveServer", "can_open_browser", "open_browser"]

HOST = "127.0.0.1"


class LiveServer:
    """Serves `page` on loopback until stopped; use as a context manager or start()/stop()."""

    def __init__(self, page: Page, *, port: int = 0) -> None:
        self.page = page
        self.httpd = ThreadingHTTPServer((HOST, port), _handler(self))
        self.httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port the server listens on."""
        return int(self.httpd.server_address[1])

    @property
    def url(self) -> str:
        """Where the page is."""
        return f"http://{HOST}:{self.port}/"

    def start(self) -> LiveServer:
        """Serve in a background thread."""
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="tome-view", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join()
            self._thread = None
        self.httpd.server_close()

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _handler(server: LiveServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "tome-view"

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002  (the stdlib's name)
            return  # a request log would clutter the terminal of the run beside it

        def do_HEAD(self) -> None:  # noqa: N802  (http.server's naming)
            self._answer(body=False)

        def do_GET(self) -> None:  # noqa: N802
            self._answer(body=True)

        def _answer(self, *, body: bool) -> None:
            if self.headers.get("Host", "") not in (f"{HOST}:{server.port}", f"localhost:{server.port}"):
                return self._send(HTTPStatus.FORBIDDEN, "text/plain; charset=utf-8", "wrong Host\n", body)
            path = unquote(urlsplit(self.path).path)
            try:
                if path == "/":  # the version first: a change while rendering shows on the next poll
                    version = server.page.version()
                    found: tuple[str, str] | None = ("text/html; charset=utf-8", server.page.html(version=version))
                elif path == LIVE_VERSION_PATH:
                    found = ("text/plain; charset=utf-8", server.page.version())
                else:
                    found = server.page.part(path)
            except Exception as e:  # noqa: BLE001  (a torn or foreign file: say so, keep serving)
                return self._send(HTTPStatus.INTERNAL_SERVER_ERROR, "text/plain; charset=utf-8",
                                  f"cannot show this: {type(e).__name__}: {e}\n", body)
            if found is None:
                return self._send(HTTPStatus.NOT_FOUND, "text/plain; charset=utf-8", "not found\n", body)
            self._send(HTTPStatus.OK, *found, body)

        def _send(self, status: HTTPStatus, ctype: str, text: str, body: bool) -> None:
            data = text.encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Content-Security-Policy", CSP)
            self.end_headers()
            if body:
                self.wfile.write(data)

    return Handler


def can_open_browser() -> bool:
    """Whether a graphical browser can open. Without a display Python's webbrowser falls back to a
    text browser in this terminal: "If text-mode browsers are used, the calling process will block
    until the user exits the browser" (docs.python.org/3/library/webbrowser.html)."""
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def open_browser(url: str) -> bool:
    """Open `url` in a graphical browser when there is one; True if one was asked to."""
    if not can_open_browser():
        return False
    try:
        return bool(webbrowser.open(url, new=2))
    except webbrowser.Error:
        return False

"""Optional JavaScript rendering: Playwright driving the system Chromium, behind the web guard.

Install with the `tome-agent[browser]` extra (Playwright) and the distribution's Chromium
(Debian: `apt-get install chromium`, giving /usr/bin/chromium); no browser is downloaded.
Every request the page makes is routed through the guarded fetcher (tools.web), so the SSRF
rules apply to scripts, images and XHR too. The browser's proxy is a local port that refuses
connections, with the implicit loopback bypass removed, so anything the route does not see
(WebSockets, a missed code path) fails closed instead of reaching the network. Service workers
are blocked (they would bypass routing) and WebRTC may not use non-proxied UDP.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import time
from pathlib import Path
from typing import Any

from tools.base import ToolContext, ToolError, tool
from tools.html import html_to_markdown
from tools.netguard import NetGuard
from tools.web import (
    Document,
    FetchError,
    FetchLimits,
    fetch_tool_error,
    guard_for,
    guarded_request,
    render_untrusted,
)

__all__ = [
    "BROWSER_TOOLS",
    "DEFAULT_CHROMIUM",
    "RenderLimits",
    "browser_problem",
    "dead_port",
    "launch_args",
    "render_document",
    "render_url",
]

DEFAULT_CHROMIUM = "/usr/bin/chromium"
_CHROMIUM_ARGS = [
    "--no-sandbox",  # runs as root in containers; the guard, not Chromium's sandbox, limits it
    "--disable-background-networking", "--disable-component-update", "--disable-default-apps",
    "--disable-sync", "--disable-extensions", "--no-first-run", "--disable-dev-shm-usage",
    "--disable-gpu", "--mute-audio", "--disable-breakpad", "--disable-domain-reliability",
    "--disable-client-side-phishing-detection", "--dns-prefetch-disable", "--no-pings",
    "--force-webrtc-ip-handling-policy=disable_non_proxied_udp",
    "--webrtc-ip-handling-policy=disable_non_proxied_udp",
    "--proxy-bypass-list=<-loopback>",
]  # fmt: skip
# Requests ask for these; the fetcher decodes bodies itself, so the framing headers must go.
_DROP_RESPONSE_HEADERS = frozenset(
    {"content-encoding", "content-length", "transfer-encoding", "connection", "keep-alive"}
)
_HIDE_INVISIBLE_JS = """() => {
  for (const el of Array.from(document.querySelectorAll('body *'))) {
    const s = getComputedStyle(el);
    if (s.display === 'none' || s.visibility === 'hidden' || s.visibility === 'collapse'
        || parseFloat(s.opacity) === 0) el.setAttribute('hidden', '');
  }
}"""


class RenderLimits(FetchLimits):
    """FetchLimits per request, plus caps for the whole page."""

    max_requests: int = 150
    page_timeout: float = 30.0
    settle: float = 3.0


def browser_problem(chromium: str = DEFAULT_CHROMIUM) -> str | None:
    """None when Playwright and Chromium are both usable, else what is missing."""
    if importlib.util.find_spec("playwright") is None:
        return "Playwright is not installed (pip install 'tome-agent[browser]')"
    if not (Path(chromium).is_file() and os.access(chromium, os.X_OK)):
        return f"Chromium is not installed at {chromium} (Debian/Ubuntu: apt-get install chromium)"
    return None


def launch_args(proxy_port: int) -> list[str]:
    """Chromium flags: quiet, no WebRTC leaks, every connection via the (dead) proxy at `proxy_port`."""
    return [*_CHROMIUM_ARGS, f"--proxy-server=http://127.0.0.1:{proxy_port}"]


def dead_port() -> socket.socket:
    """A bound but never-listening socket: connections to it are refused while it is held."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    return s


def render_document(
    url: str,
    *,
    guard: NetGuard,
    limits: RenderLimits | None = None,
    chromium: str = DEFAULT_CHROMIUM,
    blocked: list[str] | None = None,
) -> Document:
    """Load `url` in headless Chromium with every request guarded; return the rendered page."""
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    lim = limits or RenderLimits()
    refused = blocked if blocked is not None else []
    # Resolve redirects of the page itself first, so the browser's URL (and relative links) is final.
    first = guarded_request(url, guard=guard, limits=lim)
    ctype = first.content_type
    if ctype not in ("text/html", "application/xhtml+xml", ""):
        raise FetchError(
            f"refused {url}: its content type is {ctype!r}; rendering needs an HTML page"
        )
    count = 0

    def handle(route: Any) -> None:
        nonlocal count
        req = route.request
        count += 1
        if count > lim.max_requests:
            refused.append(f"{req.url} (over {lim.max_requests} requests)")
            route.abort("blockedbyclient")
            return
        if (
            req.url == first.url
            and req.method == "GET"
            and req.resource_type == "document"
            and count == 1
        ):
            r = first
        else:
            try:
                headers = {k: v for k, v in req.headers.items() if not k.startswith(":")}
                r = guarded_request(req.url, guard=guard, limits=lim, method=req.method,
                                    headers=headers, content=req.post_data_buffer)  # fmt: skip
            except FetchError as e:
                refused.append(f"{req.url}: {e}")
                route.abort("blockedbyclient")
                return
        headers = {k: v for k, v in r.headers.items() if k not in _DROP_RESPONSE_HEADERS}
        route.fulfill(status=r.status, headers=headers, body=r.body)

    dead = dead_port()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=chromium,
                args=launch_args(dead.getsockname()[1]),
                timeout=lim.page_timeout * 1000,
            )
            try:
                context = browser.new_context(
                    service_workers="block", java_script_enabled=True, accept_downloads=False
                )
                page = context.new_page()
                page.route("**/*", handle)
                page.on(
                    "websocket",
                    lambda ws: refused.append(f"{ws.url}: websocket (no route; fails closed)"),
                )
                try:
                    page.goto(first.url, wait_until="load", timeout=lim.page_timeout * 1000)
                except PlaywrightError as e:
                    raise FetchError(
                        f"rendering {first.url} failed: {str(e).splitlines()[0]}"
                    ) from None
                try:
                    page.wait_for_load_state("networkidle", timeout=lim.settle * 1000)
                except PlaywrightError:
                    pass  # a page that keeps polling: take what is there
                page.evaluate(_HIDE_INVISIBLE_JS)
                html = page.content()
                final = page.url
            finally:
                browser.close()
    finally:
        dead.close()
    doc = html_to_markdown(html, base_url=final)
    return Document(url=url, final_url=final, status=first.status, content_type="text/html (rendered)",
                    title=doc.title, text=doc.markdown, bytes_read=len(html.encode()), truncated=first.truncated)  # fmt: skip


@tool
def render_url(ctx: ToolContext, url: str) -> str:
    """Load a JavaScript-heavy web page in a headless browser and return the rendered text as markdown.

    Slower than fetch_url; use it only when fetch_url shows an empty or script-only page.

    Args:
        url: the absolute http(s) URL of the page.
    """
    problem = browser_problem()
    if problem:
        raise ToolError(
            f"page rendering is unavailable: {problem}. Use fetch_url instead.",
            kind="browser_unavailable",
        )
    guard = guard_for(ctx)
    blocked: list[str] = []
    start = time.monotonic()
    try:
        doc = render_document(url.strip(), guard=guard, blocked=blocked)
    except FetchError as e:
        raise fetch_tool_error(e) from None
    header = f"Rendered {doc.url}"
    if doc.final_url != doc.url:
        header += f" (redirected to {doc.final_url})"
    header += f": HTTP {doc.status}, {time.monotonic() - start:.1f} s"
    if doc.title:
        header += f"\nTitle: {doc.title}"
    if blocked:
        header += (
            f"\n{len(blocked)} requests of the page were blocked (internal addresses or limits)."
        )
    text = render_untrusted(
        header, doc.text or "(the rendered page has no readable text)", info="markdown"
    )
    return text


BROWSER_TOOLS = (render_url,)

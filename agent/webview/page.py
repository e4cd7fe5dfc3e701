"""The page shell every view shares: inline style, no external resource, an optional live script.

A page names nothing outside itself (no CDN, font or image URL), so it opens from file:// with
no network request. The live script only polls the server it came from, same origin.
"""

from __future__ import annotations

from html import escape

from pygments.formatters import HtmlFormatter

__all__ = ["document", "esc", "CSP", "LIVE_VERSION_PATH"]

LIVE_VERSION_PATH = "/version"
# The browser itself refuses any load from elsewhere: inline style and script only, and fetches only
# to the origin the page came from (the live server). Standard: https://www.w3.org/TR/CSP3/
CSP = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; connect-src 'self'; img-src data:"

_STYLE = """
:root { --fg:#1d2330; --muted:#667085; --bg:#fff; --panel:#f6f7f9; --line:#d9dde3;
  --accent:#3867d6; --hit:#2e9e6a; --miss:#e07b39; --out:#7e57c2; --ok:#2e9e6a; --bad:#d64545;
  --warn:#c99000; --m0:#8fa7c9; --m1:#4f7fd1; --m2:#2f4fa8; --m3:#6b2fa8; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg);
  background: var(--bg); margin: 0 auto; max-width: 1100px; padding: 16px 24px 64px; }
h1 { font-size: 20px; margin: 8px 0 4px; } h2 { font-size: 16px; margin: 28px 0 8px;
  border-bottom: 1px solid var(--line); padding-bottom: 4px; } h3 { font-size: 14px; margin: 0; }
pre, code { font: 12.5px/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
pre { background: var(--panel); padding: 8px 10px; overflow-x: auto; margin: 4px 0;
  white-space: pre-wrap; word-break: break-word; border-radius: 4px; }
table.facts { border-collapse: collapse; } table.facts th { text-align: left; color: var(--muted);
  font-weight: 500; padding: 2px 16px 2px 0; vertical-align: top; } table.facts td { padding: 2px 0; }
table.rows { border-collapse: collapse; width: 100%; } table.rows th, table.rows td { text-align: left;
  padding: 4px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
table.rows td.num, table.rows th.num { text-align: right; font-variant-numeric: tabular-nums; }
.step, .triage { border: 1px solid var(--line); border-radius: 6px; padding: 8px 12px; margin: 10px 0; }
.step-head { display: flex; gap: 16px; color: var(--muted); font-size: 12.5px; }
.step-head h3 { color: var(--fg); }
.call { border-left: 3px solid var(--ok); padding: 2px 0 2px 10px; margin: 8px 0; }
.call.failed { border-left-color: var(--bad); } .call.running { border-left-color: var(--warn); }
.tag { display: inline-block; font-size: 11.5px; padding: 0 6px; border-radius: 8px;
  background: var(--panel); border: 1px solid var(--line); color: var(--muted); }
.tag.failed, .status-bad { color: var(--bad); border-color: var(--bad); }
.tag.ok, .status-ok { color: var(--ok); border-color: var(--ok); }
.note { background: #fff8e1; border-left: 3px solid var(--warn); padding: 4px 10px; margin: 8px 0; }
.note.user { background: #e8f0fe; border-left-color: var(--accent); }
.note.user .who { font-weight: 600; color: var(--accent); }
details > summary { cursor: pointer; color: var(--muted); } details[open] > summary { margin-bottom: 2px; }
.text { white-space: pre-wrap; margin: 6px 0; }
.muted { color: var(--muted); } .live { color: var(--warn); font-weight: 600; }
svg.chart { display: block; max-width: 100%; height: auto; margin: 8px 0 16px; }
svg .chart-title { font-weight: 600; font-size: 13px; fill: var(--fg); }
svg .tick, svg .legend { font-size: 11px; fill: var(--muted); } svg .band { font-size: 11px; fill: #fff; }
svg .axis { stroke: var(--muted); } svg .grid { stroke: var(--line); stroke-dasharray: 3 3; }
svg .line { fill: none; stroke-width: 2; }
.diff .line { display: block; min-height: 1.4em; } .diff .line.add { background: #e6ffec; }
.diff .line.del { background: #ffebe9; } .diff .line.meta { color: var(--accent); }
.file { margin: 10px 0; } .file h3 { font-family: ui-monospace, monospace; font-size: 13px; }
"""

# Re-render in place when the files behind the page change (the page carries the version it was
# rendered from, so a change between load and first poll is not missed); open <details> survive.
_LIVE_SCRIPT = """
(function () {
  async function tick() {
    try {
      const v = await (await fetch("%(version)s", {cache: "no-store"})).text();
      if (v !== document.getElementById("content").dataset.version) {
        const html = await (await fetch(location.pathname, {cache: "no-store"})).text();
        const fresh = new DOMParser().parseFromString(html, "text/html").getElementById("content");
        const open = new Set(Array.from(document.querySelectorAll("details[open][id]")).map(d => d.id));
        document.getElementById("content").replaceWith(fresh);
        open.forEach(id => { const d = document.getElementById(id); if (d) d.open = true; });
      }
    } catch (e) { /* the server stopped: keep the last page */ }
    setTimeout(tick, 1000);
  }
  tick();
})();
"""


def esc(text: object) -> str:
    """Text made safe inside HTML (elements and attribute values)."""
    return escape(str(text), quote=True)


def document(title: str, body: str, *, version: str | None = None) -> str:
    """A whole HTML page: the style, the highlighter's style and `body`; with the `version` of the
    files it shows, also the poller that re-renders it when the server's version moves on."""
    highlight = HtmlFormatter(style="default").get_style_defs(".highlight")
    live = version is not None
    script = f"<script>{_LIVE_SCRIPT % {'version': LIVE_VERSION_PATH}}</script>" if live else ""
    stamp = f' data-version="{esc(version)}"' if live else ""
    return ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{esc(title)}</title><style>{_STYLE}\n{highlight}</style></head>"
            f"<body><div id=\"content\"{stamp}>{body}</div>{script}</body></html>\n")

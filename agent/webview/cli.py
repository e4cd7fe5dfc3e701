"""`tome view`: write a run's or an evaluation's page, or serve it live on 127.0.0.1.

    tome view RUN_ID | RUN_DIR | --last [-o FILE]     one self-contained HTML file (view.html)
    tome view EVAL_DIR [--official REPORT.json]        report.html, and a run page per agent instance
    tome view --serve [RUN | EVAL_DIR]                 the same page, live, until Ctrl-C
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path

from agent.cli import add_output_options
from agent.errors import ConfigError

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser, name: str) -> None:
    """Options of view."""
    parser.add_argument("target", nargs="?", help="run id, run directory, or evaluation directory")
    parser.add_argument("--last", action="store_true", help="the most recent run")
    parser.add_argument("-o", "--output", type=Path,
                        help="write the page here (default: view.html in the run's folder, report.html in the "
                        "evaluation's, whose files it links to)")
    parser.add_argument("--serve", action="store_true",
                        help="serve the page live on 127.0.0.1 instead (a random port; the latest run by default)")
    parser.add_argument("--port", type=int, default=0, help="--serve: this port instead of a random one")
    parser.add_argument("--no-browser", dest="no_browser", action="store_true", help="--serve: do not open a browser")
    parser.add_argument("--official", type=Path, metavar="REPORT",
                        help="evaluation: another grader's verdicts (SWE-bench report with resolved_ids) to compare")
    add_output_options(parser)


def run(args: argparse.Namespace) -> int:
    """Write the page(s) and print where, or serve until interrupted."""
    from agent.settings import load_settings
    from agent.webview.evalpage import load_official
    from agent.webview.pages import page_for, write_pages

    settings = load_settings().settings
    official = frozenset(load_official(args.official)) if args.official else None
    page = page_for(args.target, settings, last=args.last or (args.serve and args.target is None),
                    official=official)
    if args.serve:
        return _serve(page, args)
    written = write_pages(page, args.output)
    if args.json:
        print(json.dumps({"result": {"status": "ok", "exit_code": 0, "path": str(written[0]),
                                     "pages": [str(p) for p in written]}}))
    elif not args.quiet:
        print(written[0])
    return 0


def _serve(page, args: argparse.Namespace) -> int:
    from agent.webview.server import LiveServer, open_browser

    try:
        server = LiveServer(page, port=args.port)
    except (OSError, OverflowError) as e:  # a port in use, privileged or out of range
        raise ConfigError(f"cannot serve on 127.0.0.1:{args.port}: {e}") from None
    stop = threading.Event()
    # A plain `kill` stops the server as Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with server:
        if args.json:
            print(json.dumps({"event": {"type": "serving", "url": server.url}}), flush=True)
        else:
            print(f"tome view: {server.url}  (live, read-only; Ctrl-C stops)", file=sys.stderr, flush=True)
        if not args.no_browser:
            open_browser(server.url)
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass
        if args.json:
            print(json.dumps({"result": {"status": "ok", "exit_code": 0, "url": server.url}}), flush=True)
    return 0

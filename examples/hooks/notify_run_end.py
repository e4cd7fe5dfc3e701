#!/usr/bin/env python3
"""A run_end hook: tell the user how a run ended (a desktop notification, and a log line).

    [[hooks.run_end]]
    command = ["python3", "/path/to/notify_run_end.py"]

The event on stdin carries the run's id, status, exit code, reason, summary, cost and trajectory.
The line goes to $TOME_NOTIFY_LOG when set; `notify-send` is used when it is installed.
"""

import json
import os
import shutil
import subprocess
import sys

event = json.load(sys.stdin)
line = f"tome run {event['run_id']}: {event['status']} ({event['reason']}), ${event.get('cost', 0):.4f}"
log = os.environ.get("TOME_NOTIFY_LOG")
if log:
    with open(log, "a", encoding="utf-8") as f:
        f.write(line + "\n")
if shutil.which("notify-send"):
    subprocess.run(["notify-send", "tome", line], check=False)
print(line)

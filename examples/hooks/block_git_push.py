#!/usr/bin/env python3
"""A before_tool hook: block `git push` in shell commands (the model sees the reason).

    [[hooks.before_tool]]
    command = ["python3", "/path/to/block_git_push.py"]
    tools = ["bash"]

tome gives the event as JSON on stdin ({"event", "run_id", "cwd", "tool", "arguments"}); a
non-zero exit blocks the call and what the hook prints is the reason.
"""

import json
import re
import sys

event = json.load(sys.stdin)
command = str(event.get("arguments", {}).get("command", ""))
if re.search(r"\bgit\b(\s+-\S+(\s+\S+)?)*\s+push\b", command):
    print("pushing is not allowed from an agent run: leave the push to the user")
    sys.exit(1)

"""A whole `tome solve --json` run over a repository whose .env holds generated secrets.

The scripted model reads them every way a line can come back prefixed: `view` (line numbers),
`grep` (`path:line:`), `cat -n` (tab after the number), `git log -p` / `git show` (`+`), the
`git_diff` tool, and one output long enough to be spilled; the task itself quotes one. No request
the server received, no file of the run (trajectory, prefix, spill files) and no line of the
`--json` output may hold a value.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from loop_helpers import TEST_CMD, call, fixing_turns, git
from test_cli_solve import env_for, lines_of, tome

from agent.testing.server import Turn


def _value() -> str:
    """A generated secret (with a digit, as nearly every generated one has: see agent.secrets)."""
    return secrets.token_urlsafe(24) + "7"


def _secret_repo(repo: Path) -> tuple[str, ...]:
    """Commit a .env and a config file with generated secrets; leave one more uncommitted (git_diff)."""
    committed, config, pending = _value(), _value(), secrets.token_hex(20)
    (repo / ".env").write_text(f"DEBUG=true\nDB_PASSWORD={committed}\n")
    (repo / "config").mkdir()
    (repo / "config" / "db.ini").write_text(f"[db]\nhost = db.internal\npassword = {config}\n")
    git(repo, "add", "-f", ".env", "config")
    git(repo, "commit", "-q", "-m", "add the database passwords")
    (repo / ".env").write_text(f"DEBUG=true\nDB_PASSWORD={committed}\nAPI_TOKEN={pending}\n")
    return committed, config, pending


def _turns() -> list[Turn]:
    fix = fixing_turns()
    return [
        Turn(content=fix[0].content, tool_calls=[call("view", path=".env"), call("grep", pattern="password")]),
        Turn(tool_calls=[call("bash", command="cat -n .env; nl .env; grep -rn password config; git log -p -1")]),
        Turn(tool_calls=[call("bash", command="git diff HEAD~1 -- .env; git diff"), call("git_diff")]),
        # Long enough to be cut: the full text goes to a spill file.
        Turn(tool_calls=[call("bash", command="for i in $(seq 3000); do cat -n .env; done")]),
        *fix,
    ]


def test_no_secret_leaves_the_machine_in_a_full_run(scripted, repo, tmp_path):
    pasted = _value()  # a user pasting a log line into the task
    values = (*_secret_repo(repo), pasted)
    server = scripted(_turns())
    task = f"median is wrong for even counts (the log said: api_key={pasted})"
    proc = tome(["solve", task, "--repo", str(repo), "--base-url", server.base_url,
                 "--mode", "non-think", "--json", "--test-command", TEST_CMD], env=env_for(tmp_path), cwd=repo)
    assert proc.returncode == 0, proc.stderr
    server.assert_done()
    out = lines_of(proc.stdout)
    run_dir = Path(out[-1]["result"]["trajectory"]).parent
    spills = list((run_dir / "spill").glob("*"))
    assert spills, "the long output was not spilled: the test does not cover spill files"
    requests = [r.raw for r in server.chat_requests]
    files = [p for p in run_dir.rglob("*") if p.is_file()]
    for value in values:
        for i, raw in enumerate(requests):
            assert value not in raw, f"request {i} holds a secret"
        assert value not in proc.stdout, "--json output holds a secret"
        for p in files:
            assert value not in p.read_text(errors="replace"), p
    # The tools really showed the lines (redacted): the test exercises each prefix.
    last = requests[-1]
    for shown in ("\tDB_PASSWORD=[REDACTED", "+DB_PASSWORD=[REDACTED", "+API_TOKEN=[REDACTED",
                  "config/db.ini:3:password = [REDACTED", "+password = [REDACTED"):
        assert shown.replace("\t", "\\t") in last, shown

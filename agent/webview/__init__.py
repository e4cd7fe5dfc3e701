"""`tome view`: a run or an evaluation as one self-contained HTML page, written to disk or served live.

    pages    RunPage / EvalPage / FollowRun: what to show, its version, its HTML
    runpage  a trajectory as steps, tool calls, patch and charts
    evalpage a report as rates by group, distributions and a row per instance
    charts   inline SVG drawn in Python (no JavaScript library, nothing fetched)
    diff     a patch per file, highlighted in each file's language
    page     the shared shell: style, Content-Security-Policy, the live poller
    server   the live page on 127.0.0.1, read-only
    cli      the `tome view` command
"""

"""The `baton` command line: jobs, workflows, dead letters and health over the orchestrator's HTTP API,
with live following over its WebSockets (`baton --help`).

Exit codes: 0 done (a followed job completed), 1 a followed job failed, timed out or was cancelled (or
the server refused for another reason, e.g. 409), 2 usage errors and bad input (the server's 400, 413 and
422 included), 3 authentication (401, 403), 4 not found, 5 the orchestrator unreachable or unavailable (503).
"""

"""research-mcp against the SDK's one-tool `MCPServer`, measured in the same run and interleaved.

Run it as `.venv/bin/python -m evals.bench [--runs N] [--calls N] [--out FILE] [--strict]`. It reports three things:

1. cold start: spawn to the `tools/list` answer, research-mcp versus `baseline_server.py` (target: at most 1.10x);
2. a trivial tool call over stdio: `list_files` (and `read_file`) versus the baseline's `ping` (target: p50 at most
   1.2x);
3. the size of the `tools/list` answer, per tool.

Numbers are ratios against the baseline measured in the same run, because absolute times on a noisy 2-core machine
mean little. The results go to `evals/bench/results/latest.json` (git-ignored) unless `--out` says otherwise.
"""

"""The pipeline eval: `research-mcp demo` as a measured run.

`python -m evals.pipeline` runs the demo (a scripted client driving a real `research-mcp serve` through the whole
loop, see `research_mcp.demo`) in a fresh folder and reports, per stage, whether it passed, its time, the tool
calls it made and the characters the client received; the table is printed and kept as JSON under
`evals/pipeline/results/`.
"""

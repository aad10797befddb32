"""The walkthrough eval: one researcher's session, scripted, measured in characters per tool.

`python -m evals.walkthrough` spawns `research-mcp serve` over stdio and does what a researcher does: writes a
numpy experiment, runs it (two configurations, several seeds, on the local backend; one run on docker where it
is available), reads and compares the metrics, plots and tabulates them, scaffolds and compiles a paper, reads it
back as text, and makes the usual mistakes. Every answer is measured: its text content, its structuredContent
(as compact JSON) and its images (base64), separately, per tool.
"""

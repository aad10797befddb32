"""Evaluations of research-mcp that are not tests: benchmarks (`python -m evals.bench`)."""

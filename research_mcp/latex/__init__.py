"""LaTeX: safe compile, log diagnostics, paper text."""

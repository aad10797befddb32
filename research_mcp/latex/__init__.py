"""LaTeX: a paper scaffold, a safe compile with diagnostics, and the paper as text.

Modules: `text` (LaTeX to text, outline and lists; pure, also used for arXiv sources), `compile` (the hardened,
sandboxed compile), `logparse` (TeX log and .blg diagnostics), `packages` (which package ships a missing file,
from `texmap.tsv`, made by `gen_texmap`), `scaffold` (new_paper and its `templates/`), `papertext` (paper_text's
paging), `probe` (what the doctor asks). Nothing here imports MCP; pylatexenc is imported only when a paper is read.
"""

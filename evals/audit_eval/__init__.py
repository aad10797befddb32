"""How well `audit_paper` finds defects seeded into papers: recall and precision per kind of defect.

Run it as `.venv/bin/python -m evals.audit_eval [--small] [--seed S] [--out FILE] [--strict]`. `paper.py` builds a
paper from recorded runs with the metrics tools; `seeds.py` seeds one defect into a copy of a paper and says where;
`run.py` audits the unseeded paper and every seeded copy and scores the findings; `replay.py` answers the built
paper's citation look-ups on 127.0.0.1 from recorded arXiv and Semantic Scholar traffic.
"""

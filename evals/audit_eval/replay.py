"""The citation look-ups of the built paper, answered on 127.0.0.1 from recorded arXiv and Semantic Scholar traffic.

arXiv answers the ids whose real answers are recorded in ../shared/fixtures/arxiv with those recordings, and every
other question with the recorded answer to an id arXiv does not have (an empty feed); Semantic Scholar answers
every question with its recorded 404 (`Paper with id 0 not found`). So a real paper verifies, and an invented one
is not found, exactly as the services would answer; nothing reaches the internet.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from research_mcp.config import Settings
from tests.replay import ATOM_TYPE, ReplayServer, Response, Route, arxiv_route

__all__ = ["REAL_RECORDINGS", "replay_settings", "start_replay"]

QUERY = "/api/query"
REAL_RECORDINGS = {
    "1605.08386": "xml/id_1605.08386_s0_m100_199195aa31ad.xml",
    "astro-ph/0601001": "xml/id_astro-ph_0601001_s0_m100_3150dca9dc76.xml",
    "quant-ph/0201082v1": "xml/id_quant-ph_0201082v1_s0_m100_86989fe779ef.xml",
    "quant-ph/0201082": "xml/id_quant-ph_0201082v1_s0_m100_86989fe779ef.xml",
}
NOT_FOUND_FEED = "xml/id_0000.0000_s0_m100_8b51d9633a68.xml"
S2_NOT_FOUND = "responses/test_not_found__00.json"


def start_replay(fixtures: Path) -> ReplayServer:
    """A started replay server with the recorded answers (stop it when done)."""
    arxiv, s2 = fixtures / "arxiv", fixtures / "semanticscholar"
    server = ReplayServer()
    empty = (arxiv / NOT_FOUND_FEED).read_bytes()
    server.add(Route("GET", QUERY, Response(200, empty, {"Content-Type": ATOM_TYPE})))
    server.add(Route("GET", re.compile(r"/graph/v1/.*"), Response(404, (s2 / S2_NOT_FOUND).read_bytes(),
                                                                   {"Content-Type": "application/json"})))  # fmt: skip
    for arxiv_id, recording in REAL_RECORDINGS.items():
        server.add(arxiv_route(arxiv / recording, {"id_list": arxiv_id}))
    return server.start()


def replay_settings(workspace: Path, data_dir: Path, server: ReplayServer | None, **overrides: Any) -> Settings:
    """Settings whose literature clients talk to the replay server (or, without one, to an address nothing
    listens on, so that a look-up the eval did not expect fails instead of reaching the internet)."""
    base = server.url if server is not None else "http://127.0.0.1:9"
    values: dict[str, Any] = {
        "workspace": workspace, "data_dir": data_dir, "arxiv_url": base + QUERY, "s2_url": base,
        "arxiv_files_url": base, "arxiv_interval_s": 0, "s2_interval_s": 0, "literature_timeout_s": 5,
    }  # fmt: skip
    return Settings(**(values | overrides))

"""What the integration tests share: the local and docker backends as a fixture parameter (the conformance suite in
test_sandbox_tools.py adds Slurm with a fixture of its own)."""

from __future__ import annotations

from typing import Literal

import pytest

LOCAL_AND_DOCKER = [pytest.param("local", marks=pytest.mark.bwrap), pytest.param("docker", marks=pytest.mark.docker)]


@pytest.fixture(params=LOCAL_AND_DOCKER)
def backend(request: pytest.FixtureRequest) -> Literal["local", "docker"]:
    """Each test once per backend; a machine without one skips it (CI has both and skips nothing)."""
    return "docker" if request.param == "docker" else "local"

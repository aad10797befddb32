"""The Dockerfile build of the sandbox image against a real engine, then a real run in what it built.

No image registry is reachable here, so the public base (python:3.12-slim) cannot be pulled: the Dockerfile is built
on the offline image (`research-sandbox:base`, made by debootstrap; CI builds it first in .ci/run) as its base.
That base has Debian's numpy, so the build's pip stage installs nothing and the test needs no PyPI. Each test
builds a tag of its own and removes it afterwards (the first stage stays in the engine's build cache).
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import anyio
import anyio.to_thread
import pytest

from research_mcp.sandbox.docker import LABEL_RUN_DIR, DockerBackend
from research_mcp.sandbox.images import build_image_from_dockerfile, image_exists
from tests.conftest import skip_or_fail
from tests.integration.test_docker_backend import make_spec, wait_done

pytestmark = [pytest.mark.docker, pytest.mark.anyio]

OFFLINE_IMAGE = "research-sandbox:base"
PROBE = (
    "python3 -c \"import numpy, sys; print('sum', int(numpy.arange(10).sum()), 'from', sys.executable)\"; "
    "command -v python3; id -u"
)


@pytest.fixture(autouse=True)
def _remove_test_containers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    yield
    root = tmp_path_factory.getbasetemp()
    engine = DockerBackend().engine()
    for summary in engine.labelled():
        if Path(summary["Labels"].get(LABEL_RUN_DIR, "/")).is_relative_to(root):
            engine.remove(summary["Id"])


@pytest.fixture
def built_tag() -> Iterator[str]:
    """A fresh tag for the build, removed from the engine after the test."""
    if not image_exists(OFFLINE_IMAGE):
        skip_or_fail(f"the offline image {OFFLINE_IMAGE} is missing: run `research-mcp sandbox build-image`")
    tag = f"research-sandbox:test-dockerfile-{uuid.uuid4().hex[:10]}"
    yield tag
    subprocess.run(["docker", "rmi", "--force", tag], capture_output=True, timeout=60, check=False)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / ".research").mkdir(parents=True)
    return root


async def run_probe(image: str, workspace: Path) -> tuple[int | None, str]:
    backend = DockerBackend(image=image)
    spec = make_spec(workspace, PROBE)
    status = await wait_done(backend, await backend.start(spec))
    return status.exit_code, (spec.run_dir / "log.txt").read_text(errors="replace")


async def test_the_dockerfile_build_on_the_offline_base_runs_numpy_as_the_debootstrap_image_does(
    built_tag: str, workspace: Path
) -> None:
    image_id = await anyio.to_thread.run_sync(
        lambda: build_image_from_dockerfile(built_tag, base=OFFLINE_IMAGE, read_timeout_s=300)
    )
    assert image_id.startswith("sha256:")
    assert image_exists(built_tag)

    code, log = await run_probe(built_tag, workspace)
    assert code == 0, log
    assert "sum 45 from /usr/bin/python3" in log
    # the same run in the debootstrap image prints the same lines: same interpreter path, same numpy, same user
    base_code, base_log = await run_probe(OFFLINE_IMAGE, workspace)
    assert (base_code, base_log) == (code, log)


async def test_a_ca_bundle_given_to_the_build_stays_out_of_the_image(built_tag: str) -> None:
    bundle = Path("/etc/ssl/certs/ca-certificates.crt")
    if not bundle.is_file():
        import certifi

        bundle = Path(certifi.where())
    await anyio.to_thread.run_sync(
        lambda: build_image_from_dockerfile(built_tag, base=OFFLINE_IMAGE, ca_bundle=bundle, read_timeout_s=300)
    )
    shown = await anyio.run_process(
        ["docker", "run", "--rm", "--network", "none", built_tag, "sh", "-c", "ls -A /tmp /opt; echo done"]
    )
    listing = shown.stdout.decode()
    assert "build-ca.pem" not in listing and "numpy" not in listing
    assert listing.rstrip().endswith("done")

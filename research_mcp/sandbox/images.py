"""The base image Docker runs use: python3 with numpy, built two ways, the same for runs.

`build_image` (Linux, as root) runs `debootstrap --variant=minbase` into a temporary folder and streams it into
the engine with `tar -C ROOTFS -c . | docker import - TAG`: no Dockerfile, no registry, no buildx. It needs root
(debootstrap makes device nodes and chroots), the `debootstrap` and `tar` programs, the `docker` CLI and a
running engine.

`build_image_from_dockerfile` (anywhere an engine answers, e.g. macOS with Docker Desktop) builds the packaged
`Dockerfile.sandbox` on a base image (`python:3.12-slim` by default) through the docker SDK, streaming the
builder's lines to the log. It uses the engine's classic builder because the SDK speaks only that one (no
BuildKit, so no build secrets): a CA bundle for a TLS-intercepting proxy goes in the build context, and only
the first of the Dockerfile's two stages, the one running pip, sees it.

`choose_method` picks debootstrap where it can run, else the Dockerfile. Both are synchronous and take a
minute or two: the CLI calls them directly; async code wraps them in `anyio.to_thread.run_sync`.
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import IO, Literal, cast

from research_mcp.errors import SandboxError

__all__ = [
    "DEFAULT_BASE",
    "DEFAULT_MIRROR",
    "DEFAULT_PACKAGES",
    "DEFAULT_SUITE",
    "DOCKERFILE",
    "BuildMethod",
    "build_image",
    "build_image_from_dockerfile",
    "choose_method",
    "dockerfile_context",
    "image_exists",
]

logger = logging.getLogger(__name__)

DEFAULT_SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_PACKAGES: tuple[str, ...] = ("python3", "python3-numpy")
_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

BuildMethod = Literal["debootstrap", "dockerfile"]
DEFAULT_BASE = "python:3.12-slim"
"""The public base image of the Dockerfile build: Debian with python3 on PATH; pip adds numpy."""
DOCKERFILE = "Dockerfile.sandbox"
"""The Dockerfile shipped in this package (research_mcp/sandbox/)."""
CA_IN_CONTEXT = "build-ca.pem"
"""Where the CA bundle sits in the build context (empty when none is given); the Dockerfile names it."""
MAX_CA_BUNDLE_BYTES = 10 << 20


def choose_method() -> BuildMethod:
    """debootstrap where it can run (Linux, root, the program installed), else the Dockerfile."""
    if sys.platform.startswith("linux") and os.geteuid() == 0 and shutil.which("debootstrap") is not None:
        return "debootstrap"
    return "dockerfile"


def build_image(
    tag: str,
    *,
    suite: str = DEFAULT_SUITE,
    mirror: str = DEFAULT_MIRROR,
    packages: Sequence[str] = DEFAULT_PACKAGES,
    scratch_dir: Path | None = None,
    debootstrap_timeout_s: float = 1200,
    import_timeout_s: float = 600,
) -> str:
    """Build `tag` from a fresh debootstrap root and return the new image id (`sha256:...`).

    Args:
        tag: Image name, e.g. `research-sandbox:base`.
        suite: Debian suite debootstrap installs.
        mirror: Debian mirror URL (an apt proxy or a local mirror works too).
        packages: Extra Debian packages (`--include=`), on top of the minbase variant.
        scratch_dir: Where the temporary root folder goes (about 350 MB); default: the system temp folder.

    Raises:
        SandboxError: not root, a program is missing, a step failed or ran past its time limit.
    """
    for value, what in ((tag, "tag"), (suite, "suite"), (mirror, "mirror"), *((p, "package") for p in packages)):
        if not value or value.startswith("-") or any(c.isspace() or c == "," for c in value):
            raise SandboxError(f"Bad {what} {value!r} for the image build: no spaces, commas or leading '-'.")
    if os.geteuid() != 0:
        raise SandboxError(
            "Building the sandbox image needs root (debootstrap creates device nodes and chroots): "
            "run `sudo research-mcp sandbox build-image`, or build it from the Dockerfile instead "
            "(`research-mcp sandbox build-image --method dockerfile`)."
        )
    debootstrap = _program("debootstrap", "install it with `apt-get install -y debootstrap`")
    tar = _program("tar", "install it with `apt-get install -y tar`")
    docker = _program("docker", "install the Docker CLI (`apt-get install -y docker.io`) and start dockerd")

    scratch = Path(tempfile.mkdtemp(prefix="research-sandbox-", dir=scratch_dir))
    rootfs = scratch / "rootfs"
    try:
        started = time.monotonic()
        logger.info("debootstrap %s (%s) from %s into %s", suite, ",".join(packages), mirror, rootfs)
        argv = [debootstrap, "--variant=minbase"]
        if packages:
            argv.append("--include=" + ",".join(packages))
        argv += [suite, str(rootfs), mirror]  # debootstrap takes no `--`; the values were checked above
        _run_logged(argv, timeout_s=debootstrap_timeout_s, what="debootstrap")
        logger.info("debootstrap done in %.1f s; importing into the engine as %s", time.monotonic() - started, tag)

        started = time.monotonic()
        image_id = _tar_into_docker_import(tar, docker, rootfs, tag, timeout_s=import_timeout_s)
        logger.info("docker import done in %.1f s: %s %s", time.monotonic() - started, tag, image_id)
        return image_id
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def build_image_from_dockerfile(
    tag: str,
    *,
    base: str = DEFAULT_BASE,
    ca_bundle: Path | None = None,
    base_url: str | None = None,
    read_timeout_s: float = 900,
) -> str:
    """Build `tag` from the packaged Dockerfile on `base` and return the new image id (`sha256:...`).

    Args:
        tag: Image name, e.g. `research-sandbox:base`.
        base: Base image (the Dockerfile's `BASE`): python3 on PATH, and numpy or pip. Pulled when missing.
        ca_bundle: PEM bundle pip trusts in the build, for a TLS-intercepting proxy (`RESEARCH_MCP_CA_BUNDLE`).
        base_url: Engine address; default DOCKER_HOST, else the local socket.
        read_timeout_s: Longest the builder may stay silent (a big download) before the build counts as stuck.

    Raises:
        SandboxError: a bad name, an unreadable CA bundle, no engine, or a failed build step (with its error).
    """
    from research_mcp.sandbox.docker import connect

    for value, what in ((tag, "tag"), (base, "base image")):
        if not value or value.startswith("-") or any(c.isspace() for c in value):
            raise SandboxError(f"Bad {what} {value!r} for the image build: no spaces or leading '-'.")
    context = dockerfile_context(ca_bundle)
    engine = connect(base_url, timeout_s=read_timeout_s)
    started = time.monotonic()
    logger.info("building %s from %s on %s through the engine at %s", tag, DOCKERFILE, base, engine.where)
    last: list[str] = []
    try:
        for line in engine.build(context, tag=tag, dockerfile=DOCKERFILE, buildargs={"BASE": base}):
            logger.info("build: %s", line)
            last = [*last[-19:], line]
    except SandboxError as exc:
        tail = "\n".join(line for line in last if not line.startswith(("Removing intermediate", " ---> ")))
        raise SandboxError(f"{exc} Its last lines:\n{tail}\n{_build_hint(tail, ca_bundle)}") from exc
    image_id = engine.image_id(tag)
    logger.info("build done in %.1f s: %s %s", time.monotonic() - started, tag, image_id)
    return image_id


def _build_hint(tail: str, ca_bundle: Path | None) -> str:
    """What to do about a failed Dockerfile build, from its last lines."""
    if "CERTIFICATE_VERIFY_FAILED" in tail:
        if ca_bundle is None:
            return (
                "pip in the build could not verify PyPI's certificate: behind a TLS-intercepting proxy, set "
                "RESEARCH_MCP_CA_BUNDLE to the PEM bundle that holds the proxy's CA and build again."
            )
        return (
            f"pip in the build could not verify PyPI's certificate even with {ca_bundle}: does it hold the proxy's CA?"
        )
    if "No module named pip" in tail:
        return "The base image has neither numpy nor pip: choose a base with pip (--base python:3.12-slim)."
    return "Check that the base image has python3 (and numpy, or pip and a way to PyPI), then build again."


def dockerfile_context(ca_bundle: Path | None = None) -> bytes:
    """The build context as a tar: the packaged Dockerfile, and the CA bundle (an empty file when none is given).

    Raises:
        SandboxError: the CA bundle cannot be read, is empty, or is larger than a CA bundle can be.
    """
    dockerfile = resources.files("research_mcp.sandbox").joinpath(DOCKERFILE).read_bytes()
    ca = b""
    if ca_bundle is not None:
        try:
            ca = ca_bundle.read_bytes()
        except OSError as exc:
            raise SandboxError(
                f"The CA bundle {str(ca_bundle)!r} (RESEARCH_MCP_CA_BUNDLE) cannot be read ({exc.strerror or exc}): "
                "point it at the PEM file your proxy's CA is in, e.g. /etc/ssl/certs/ca-certificates.crt."
            ) from exc
        if b"-----BEGIN CERTIFICATE-----" not in ca or len(ca) > MAX_CA_BUNDLE_BYTES:
            raise SandboxError(
                f"The CA bundle {str(ca_bundle)!r} (RESEARCH_MCP_CA_BUNDLE) holds no PEM certificate or is over "
                f"{MAX_CA_BUNDLE_BYTES >> 20} MiB: point it at the PEM file your proxy's CA is in."
            )
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in ((DOCKERFILE, dockerfile), (CA_IN_CONTEXT, ca)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def image_exists(tag: str, *, base_url: str | None = None) -> bool:
    """Whether the engine has `tag` locally (synchronous: wrap it in `anyio.to_thread.run_sync` in async code).

    Raises:
        SandboxError: the docker package is missing or no engine answers.
    """
    from research_mcp.sandbox.docker import connect

    return connect(base_url).image_exists(tag)


def _program(name: str, hint: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise SandboxError(f"`{name}` is not installed: {hint}.")
    return path


def _run_logged(argv: list[str], *, timeout_s: float, what: str) -> None:
    """Run argv, logging its output line by line (debug) and its last lines on failure; killed at the time limit."""
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    timer = threading.Timer(timeout_s, proc.kill)
    timer.start()
    last: list[str] = []
    try:
        for raw in cast(IO[bytes], proc.stdout):
            line = raw.decode("utf-8", "replace").rstrip()
            logger.debug("%s: %s", what, line)
            last = [*last[-19:], line]
        rc = proc.wait()
    finally:
        timer.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if rc != 0:
        reason = f"was killed after {timeout_s:.0f} s" if rc == -9 else f"exited with {rc}"
        tail = "\n".join(last[-10:])
        raise SandboxError(
            f"{what} {reason}; its last lines:\n{tail}\nCheck the mirror and the disk space, then retry."
        )


def _tar_into_docker_import(tar: str, docker: str, rootfs: Path, tag: str, *, timeout_s: float) -> str:
    """`tar -C rootfs -c . | docker import - tag`, streamed through a pipe; returns the image id."""
    producer = subprocess.Popen(
        [tar, "--numeric-owner", "-C", str(rootfs), "-c", "."],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    changes = [f"--change=ENV PATH={_PATH}", "--change=ENV LANG=C.UTF-8", '--change=CMD ["/bin/sh"]']
    consumer = subprocess.Popen(
        [docker, "import", *changes, "--message=research-mcp sandbox build-image", "-", tag],
        stdin=producer.stdout,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    cast(IO[bytes], producer.stdout).close()  # only the consumer holds the pipe now: it sees EOF when tar ends
    try:
        out, err = consumer.communicate(timeout=timeout_s)
        tar_err = cast(IO[bytes], producer.stderr).read()
        tar_rc = producer.wait(timeout=30)
    except subprocess.TimeoutExpired as exc:
        raise SandboxError(f"docker import of {tag} took more than {timeout_s:.0f} s; is the engine busy?") from exc
    finally:
        for proc in (producer, consumer):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        cast(IO[bytes], producer.stderr).close()
    if tar_rc != 0:
        raise SandboxError(f"tar of the image root failed ({tar_rc}): {tar_err.decode(errors='replace')[-500:]}")
    if consumer.returncode != 0:
        message = err.decode(errors="replace").strip()[-500:]
        raise SandboxError(f"docker import failed ({consumer.returncode}): {message}. Is dockerd running?")
    return out.decode().strip()

"""The offline base image Docker runs use: a Debian minbase root with python3 and numpy, made without a registry.

`build_image` runs `debootstrap --variant=minbase` into a temporary folder and streams it into the engine with
`tar -C ROOTFS -c . | docker import - TAG` (no Dockerfile, no registry, no buildx). It needs root (debootstrap
makes device nodes and chroots), the `debootstrap` and `tar` programs, the `docker` CLI and a running engine.
It is synchronous and takes a minute or two: the CLI calls it directly; async code wraps it in
`anyio.to_thread.run_sync`.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, cast

from research_mcp.errors import SandboxError

__all__ = ["DEFAULT_MIRROR", "DEFAULT_PACKAGES", "DEFAULT_SUITE", "build_image", "image_exists"]

logger = logging.getLogger(__name__)

DEFAULT_SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_PACKAGES: tuple[str, ...] = ("python3", "python3-numpy")
_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


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
            "run `sudo research-mcp sandbox build-image`, or build it on a machine where you are root."
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

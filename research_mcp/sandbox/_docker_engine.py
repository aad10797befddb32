"""The only code that touches the untyped docker SDK: a typed `DockerEngine` with the few calls the backend makes,
each mapping docker's errors to a `SandboxError` that says what to do. The SDK is imported on first use."""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import re
import shutil
import socket
import sys
import time
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote, urlsplit

from research_mcp.errors import SandboxError
from research_mcp.probe import PartStatus, part, step

__all__ = [
    "LABEL_RUN",
    "NVIDIA_TOOLKIT_URL",
    "ContainerGoneError",
    "DockerEngine",
    "connect",
    "engine_answers",
    "probe_engine",
]

LABEL_RUN = "research-mcp.run"
NVIDIA_TOOLKIT_URL = "https://docs.nvidia.com/datacenter/cloud-native/container-toolkit/latest/install-guide.html"


def _docker_module() -> Any:
    try:
        return importlib.import_module("docker")
    except ImportError as exc:
        raise SandboxError(
            "The Docker backend needs the docker package, a dependency of research-mcp: reinstall it "
            "(pip install 'docker>=7'), or use the local backend."
        ) from exc


def _where(base_url: str | None) -> str:
    return base_url or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
"""The colour codes the classic builder wraps a step's stderr in."""
_FAILED_RUN = re.compile(r"The command .* returned a non-zero code: (\d+)", re.DOTALL)

_IMAGE_RECIPE = (
    "Build the sandbox image {image} with `research-mcp sandbox build-image --tag {image}` (debootstrap as root "
    "on Linux, else the packaged Dockerfile on python:3.12-slim), or by hand offline from Debian: "
    "`debootstrap --variant=minbase "
    "--include=python3,python3-numpy bookworm /tmp/rootfs && tar -C /tmp/rootfs -c . | docker import - {image}`"
)


@dataclass(frozen=True, slots=True)
class _Endpoint:
    path: str | None = None
    host: str = ""
    port: int = 0

    @property
    def label(self) -> str:
        return self.path if self.path is not None else f"tcp://{self.host}:{self.port}"


def _endpoint(docker_host: str, system: str = sys.platform) -> _Endpoint | str:
    """Where the engine listens (DOCKER_HOST, else the default socket), or why it cannot be asked without the SDK."""
    if not docker_host:
        candidates = ["/var/run/docker.sock"]
        if system == "darwin":
            candidates.append(str(Path.home() / ".docker" / "run" / "docker.sock"))
        return _Endpoint(path=next((c for c in candidates if os.path.exists(c)), candidates[0]))
    parsed = urlsplit(docker_host)
    if parsed.scheme == "unix" and parsed.path:
        return _Endpoint(path=parsed.path)
    if parsed.scheme == "tcp" and parsed.hostname:
        if os.environ.get("DOCKER_TLS_VERIFY"):
            return f"DOCKER_HOST={docker_host} uses TLS (DOCKER_TLS_VERIFY), which the doctor does not check"
        return _Endpoint(host=parsed.hostname, port=parsed.port or 2375)
    return f"DOCKER_HOST={docker_host} is not a unix:// or tcp:// address; the doctor cannot check it"


def _get(endpoint: _Endpoint, path: str, timeout_s: float) -> tuple[int, bytes]:
    """One raw HTTP/1.0 GET to the engine, without the SDK: (status, body). Blocks up to `timeout_s` per step."""
    if endpoint.path is not None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout_s)
        try:
            sock.connect(endpoint.path)
        except OSError:
            sock.close()
            raise
    else:
        sock = socket.create_connection((endpoint.host, endpoint.port), timeout=timeout_s)
    data = bytearray()
    with sock:
        sock.sendall(f"GET {path} HTTP/1.0\r\nHost: docker\r\n\r\n".encode())
        while len(data) < (1 << 20) and (chunk := sock.recv(1 << 16)):
            data += chunk
    head, _, body = bytes(data).partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0].split()
    if len(status) < 2 or not status[1].isdigit():
        raise ValueError(f"not an HTTP answer from {endpoint.label}: {head[:60]!r}")
    return int(status[1]), body


def engine_answers(base_url: str | None = None, *, timeout_s: float = 1.0) -> bool:
    """Whether an engine answers `/_ping` on a unix socket (DOCKER_HOST's, else the local one), without the SDK.

    A tcp:// DOCKER_HOST counts as answering: the user pointed at an engine on purpose, and `connect` says more.
    """
    endpoint = _endpoint(base_url or os.environ.get("DOCKER_HOST", ""))
    if not isinstance(endpoint, _Endpoint) or endpoint.path is None:
        return True
    try:
        return _get(endpoint, "/_ping", timeout_s)[0] == 200
    except (OSError, ValueError):
        return False


def probe_engine(image: str, timeout_s: float, system: str = sys.platform) -> PartStatus:
    """The doctor's look at the engine (`/_ping`, `/version`, `/images/<image>/json`): a CLI alone runs nothing.
    Blocks up to `timeout_s` per request."""
    endpoint = _endpoint(os.environ.get("DOCKER_HOST", ""), system)
    if isinstance(endpoint, str):
        return part("docker", "unsupported", endpoint)
    cli = shutil.which("docker")
    cli_note = f"docker CLI at {cli}" if cli else "no docker CLI on PATH (not needed)"
    try:
        ping, _ = _get(endpoint, "/_ping", timeout_s)
    except OSError as exc:
        reason = exc.strerror if exc.strerror else repr(exc)
        if isinstance(exc, PermissionError):
            install = "Let your user use the engine: `usermod -aG docker $USER`, then log in again"
        else:
            install = step(system, "apt-get install -y docker.io && dockerd &", "Start Docker Desktop")
        return part(
            "docker", "unreachable", f"engine not reachable at {endpoint.label} ({reason}); {cli_note}", install
        )
    if ping != 200:
        return part("docker", "error", f"engine at {endpoint.label} answered /_ping with HTTP {ping}")
    about: dict[str, object] = {}
    with contextlib.suppress(ValueError):
        parsed: object = json.loads(_get(endpoint, "/version", timeout_s)[1] or b"{}")
        about = cast(dict[str, object], parsed) if isinstance(parsed, dict) else {}
    version = str(about.get("Version") or "") or None
    found, _ = _get(endpoint, f"/images/{quote(image, safe='/:@')}/json", timeout_s)
    presence = "present" if found == 200 else "missing"
    detail = f"engine {version} (API {about.get('ApiVersion')}) at {endpoint.label}; image {image} {presence}"
    install = None if found == 200 else _IMAGE_RECIPE.format(image=image)
    return part("docker", "ok", f"{detail}; {cli_note}", install, version)


def connect(base_url: str | None = None, *, timeout_s: float = 60) -> DockerEngine:
    """A client for the engine at `base_url` (default: DOCKER_HOST, else the local socket). Synchronous.

    Raises:
        SandboxError: the docker package is missing or no engine answers.
    """
    docker = _docker_module()
    where = _where(base_url)
    unreachable = f"Docker engine not reachable at {where}: start dockerd / Docker Desktop, or use the local backend."
    if where.startswith("unix://"):
        # docker-py leaks its socket when a unix connect fails (transport/unixconn.py); knock first ourselves.
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(timeout_s)
            try:
                probe.connect(where.removeprefix("unix://"))
            except OSError as exc:
                raise SandboxError(f"{unreachable} ({exc})") from exc
    try:
        if base_url is None:
            client = docker.from_env(version="auto", timeout=int(timeout_s))
        else:
            client = docker.DockerClient(base_url=base_url, version="auto", timeout=int(timeout_s))
    except docker.errors.DockerException as exc:
        raise SandboxError(f"{unreachable} ({exc})") from exc
    return DockerEngine(client, _where(base_url))


class ContainerGoneError(SandboxError):
    """The container vanished while the backend was reading it (another process finished the run)."""

    def __init__(self, container_id: str) -> None:
        super().__init__(f"Container {container_id[:12]} is gone.")
        self.container_id = container_id


class DockerEngine:
    """The few calls the backend makes, typed, each mapping docker's errors to `SandboxError`. Synchronous."""

    def __init__(self, client: Any, where: str) -> None:
        self._client: Any = client
        self._api: Any = client.api
        self._errors: Any = _docker_module().errors
        self._requests: Any = importlib.import_module("requests.exceptions")
        self.where = where

    @contextmanager
    def _mapped(self, what: str, image: str | None = None) -> Generator[None]:
        errors = self._errors
        try:
            yield
        except errors.ImageNotFound as exc:
            raise SandboxError(
                f"Image {image!r} not found: build it with `research-mcp sandbox build-image` "
                f"or set RESEARCH_MCP_DOCKER_IMAGE (or `docker pull` it)."
            ) from exc
        except errors.APIError as exc:
            text = str(getattr(exc, "explanation", None) or exc)
            if "could not select device driver" in text or "nvidia" in text.lower():
                raise SandboxError(
                    f"This Docker engine cannot give containers GPUs ({text}). Install the NVIDIA driver and the "
                    f"NVIDIA Container Toolkit, then restart dockerd: {NVIDIA_TOOLKIT_URL}"
                ) from exc
            if "is already in use" in text:
                raise SandboxError(
                    f"Docker refused to {what}: {text}. A container of this run already exists: poll or cancel "
                    "the run, or remove that container (`docker rm -f <name>`)."
                ) from exc
            raise SandboxError(f"Docker refused to {what}: {text}") from exc
        except (errors.DockerException, self._requests.RequestException) as exc:
            raise SandboxError(
                f"Docker engine not reachable at {self.where} while trying to {what}: start dockerd / Docker "
                f"Desktop, or use the local backend. ({exc})"
            ) from exc

    def image_exists(self, tag: str) -> bool:
        with self._mapped(f"look up image {tag}"):
            try:
                self._api.inspect_image(tag)
            except self._errors.NotFound:
                return False
        return True

    def image_id(self, tag: str) -> str:
        """The id (`sha256:...`) of a local image."""
        with self._mapped(f"look up image {tag}", tag):
            return cast(str, self._api.inspect_image(tag)["Id"])

    def build(self, context: bytes, *, tag: str, dockerfile: str, buildargs: dict[str, str]) -> Iterator[str]:
        """Build `tag` from a tar `context` with the engine's classic builder, yielding its log lines as they come.

        The base image is pulled only when the engine lacks it. Intermediate containers are removed, also after a
        failed step. A failed step raises a `SandboxError` with the builder's error; a build silent past the
        client's timeout raises one saying the engine stopped answering.
        """
        with self._mapped(f"build image {tag}"):
            stream = self._api.build(
                fileobj=io.BytesIO(context),
                custom_context=True,
                tag=tag,
                dockerfile=dockerfile,
                buildargs=buildargs,
                rm=True,
                forcerm=True,
                decode=True,
            )
            for item in cast(Iterator[dict[str, Any]], stream):
                if "error" in item:
                    detail = cast(dict[str, Any], item.get("errorDetail") or {})
                    message = str(detail.get("message") or item["error"]).strip()
                    failed_run = _FAILED_RUN.fullmatch(message)
                    if failed_run is not None:  # the whole RUN line is in the log already
                        message = f"a RUN step exited with code {failed_run.group(1)}"
                    raise SandboxError(f"The build of {tag} failed: {message}.")
                text = item.get("stream") or item.get("status")
                if isinstance(text, str):
                    for line in _ANSI.sub("", text).splitlines():
                        if line.strip():
                            yield line.rstrip()

    def create(self, kwargs: dict[str, Any]) -> str:
        """Create (not start) the container; returns its id."""
        image = cast(str, kwargs["image"])
        with self._mapped("create the run's container", image):
            container = self._client.containers.create(**kwargs)
            return cast(str, container.id)

    def start(self, container_id: str) -> None:
        with self._mapped("start the run's container"):
            self._api.start(container_id)

    def inspect(self, container_id: str) -> dict[str, Any] | None:
        """The container's attributes, or None when the engine no longer has it."""
        with self._mapped("inspect a run's container"):
            try:
                return cast(dict[str, Any], self._api.inspect_container(container_id))
            except self._errors.NotFound:
                return None

    def logs(self, container_id: str) -> Iterator[bytes]:
        """The output as the engine stored it, streamed. Raises `ContainerGoneError` if the container is gone."""
        with self._mapped("read a run's logs"):
            try:
                stream = self._api.logs(container_id, stdout=True, stderr=True, stream=True, follow=False)
            except self._errors.NotFound as exc:
                raise ContainerGoneError(container_id) from exc
            for chunk in stream:
                yield cast(bytes, chunk)

    def kill(self, container_id: str) -> None:
        """SIGKILL pid 1: the kernel then kills every process in the container's pid namespace."""
        with self._mapped("kill a run's container"):
            try:
                self._api.kill(container_id)
            except self._errors.NotFound:
                return
            except self._errors.APIError as exc:
                if "is not running" not in str(exc):
                    raise

    def wait(self, container_id: str, timeout_s: float) -> None:
        """Until the container is no longer running (or gone)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            attrs = self.inspect(container_id)
            if attrs is None or cast(str, attrs["State"]["Status"]) not in ("running", "paused", "restarting"):
                return
            time.sleep(0.05)
        raise SandboxError(f"Container {container_id[:12]} still runs {timeout_s:.0f} s after a kill; check dockerd.")

    def wait_exit(self, container_id: str, timeout_s: float) -> None:
        """Block until the container exits (the engine's wait endpoint answers then) or `timeout_s` passes; any
        failure (a timeout, a container gone) just returns: the caller polls next."""
        try:
            self._api.wait(container_id, timeout=max(0.001, timeout_s))
        except (self._errors.DockerException, self._requests.RequestException):
            return

    def remove(self, container_id: str) -> None:
        with self._mapped("remove a run's container"):
            try:
                self._api.remove_container(container_id, force=True)
            except self._errors.NotFound:
                return
            except self._errors.APIError as exc:
                if "already in progress" not in str(exc):
                    raise

    def memory_peak(self, container_id: str) -> int | None:
        """Highest memory use so far, read from the container's cgroup when the engine runs on this machine.

        The stats API would give the same number but takes a second per call (it samples twice), and the
        cgroup is gone once the container exits, so `poll` samples it while the run is running.
        """
        for path in _memory_peak_files(container_id):
            try:
                return int(path.read_text().strip()) or None
            except (OSError, ValueError):
                continue
        return None

    # -- named volumes (the environments' storage) ------------------------------------------------------------

    def volume_create(self, name: str, labels: dict[str, str]) -> str:
        """Make the named volume (an existing one is kept); returns its mount point on the engine's host."""
        with self._mapped(f"create volume {name}"):
            found = self._api.create_volume(name=name, labels=labels)
        return cast(str, found.get("Mountpoint") or "")

    def volume_exists(self, name: str) -> bool:
        with self._mapped(f"look up volume {name}"):
            try:
                self._api.inspect_volume(name)
            except self._errors.NotFound:
                return False
        return True

    def volume_remove(self, name: str) -> None:
        """Remove the volume; gone already is fine, one a container still uses is a `SandboxError`."""
        with self._mapped(f"remove volume {name}"):
            try:
                self._api.remove_volume(name, force=False)
            except self._errors.NotFound:
                return

    def run_root(self, image: str, command: list[str], volumes: dict[str, dict[str, str]]) -> int:
        """Run a short command as root with no network in `image` and return its exit code (a volume's owner is
        set this way when the engine's disk is not this machine's)."""
        with self._mapped("prepare a volume", image):
            container = self._client.containers.run(
                image, command, user="0:0", network_mode="none", volumes=volumes, detach=True
            )
            try:
                return int(container.wait(timeout=60)["StatusCode"])
            finally:
                container.remove(force=True)

    def labelled(self) -> list[dict[str, Any]]:
        """Every container (running or not) that carries the research-mcp run label."""
        with self._mapped("list the run containers"):
            found = self._api.containers(all=True, filters={"label": LABEL_RUN})
        return [cast(dict[str, Any], c) for c in found]


def _memory_peak_files(container_id: str) -> list[Path]:
    """Where the high-water mark of a container's memory lives: cgroup v1 or v2, cgroupfs or systemd driver."""
    root = Path("/sys/fs/cgroup")
    return [
        root / "memory" / "docker" / container_id / "memory.max_usage_in_bytes",
        root / "memory" / "system.slice" / f"docker-{container_id}.scope" / "memory.max_usage_in_bytes",
        root / "system.slice" / f"docker-{container_id}.scope" / "memory.peak",
        root / "docker" / container_id / "memory.peak",
    ]

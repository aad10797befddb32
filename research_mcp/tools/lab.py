"""The doctor behind `research-mcp doctor` and `lab_info`: what the lab can do here, and how to fix the rest.

Every probe runs the real thing (a namespace is started, the Docker engine is asked over its socket), all run
concurrently, each bounded by `Settings.probe_timeout_s`; a probe that hangs is reported as "timeout" and its
process group killed. Children never inherit our stdout (the stdio protocol stream). Only the stdlib and pydantic
are imported at module level and nothing Linux-only at all, so the import is cheap on Linux and macOS alike.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast
from urllib.parse import quote, urlsplit

from pydantic import Field

from research_mcp.model import ToolModel

if TYPE_CHECKING:
    from anyio.abc import ByteReceiveStream, ByteStream

    from research_mcp.config import Settings
    from research_mcp.workspace import Workspace

__all__ = ["Component", "Gpu", "LabInfo", "Progress", "format_report", "probe_lab"]

logger = logging.getLogger(__name__)

_MAX_OUTPUT_BYTES = 64 << 10
_TEX_APT = (
    "apt-get install -y --no-install-recommends texlive-latex-base texlive-latex-recommended "
    "texlive-fonts-recommended texlive-latex-extra texlive-science texlive-bibtex-extra latexmk biber lmodern "
    "poppler-utils"
)
_SLIRP = (
    "apt-get install -y slirp4netns  (the network of local runs that ask for one)",
    "Linux only: on macOS runs that need a network use the docker backend",
)
_TEX_MAC = "brew install --cask mactex-no-gui  (or install MacTeX from https://tug.org/mactex/)"
_TOOLKIT_URL = "https://docs.nvidia.com/datacenter/cloud-native/container-toolkit/latest/install-guide.html"
_NVIDIA_INSTALL = (
    "Install the NVIDIA driver (Debian: enable non-free, then `apt-get install -y nvidia-driver nvidia-smi` and "
    f"reboot) and, for Docker runs, the NVIDIA Container Toolkit (Debian does not ship it): {_TOOLKIT_URL}"
)
_USERNS_HINT = (
    "Allow unprivileged user namespaces: `sysctl -w kernel.unprivileged_userns_clone=1` and "
    "`sysctl -w user.max_user_namespaces=10000` "
    "(Ubuntu 24.04+: `sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`)"
)
_BWRAP_ARGS = (
    "--unshare-all", "--die-with-parent", "--new-session", "--ro-bind", "/usr", "/usr",
    "--symlink", "usr/bin", "/bin", "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64",
    "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "/usr/bin/true",
)  # fmt: skip
_IMAGE_RECIPE = (
    "Build the sandbox image {image} offline from Debian: `debootstrap --variant=minbase "
    "--include=python3,python3-numpy bookworm /tmp/rootfs && tar -C /tmp/rootfs -c . | docker import - {image}`"
)
_SETPRIV_ARGS = ("--reuid=65534", "--regid=65534", "--clear-groups")
_CGROUP_CONTROLLERS = ("memory", "pids", "cpu")


class Component(ToolModel):
    """One thing the lab was probed for."""

    name: str = Field(
        description="What was probed: docker, bubblewrap, slirp4netns, cgroups, nvidia, tex, latexmk, biber, ..."
    )
    ok: bool = Field(description="True when it works on this machine.")
    status: str = Field(description="ok, missing, unreachable, timeout, error or unsupported.")
    version: str | None = Field(default=None, description="Version found, if any.")
    detail: str = Field(description="One line: what was found or what went wrong.")
    install: str | None = Field(default=None, description="The exact step that fixes it on this platform.")


class Gpu(ToolModel):
    """One NVIDIA GPU as nvidia-smi reports it."""

    index: int = Field(description="GPU index, as used in CUDA_VISIBLE_DEVICES.")
    name: str = Field(description="Model name.")
    memory_total_mib: int = Field(description="Total memory in MiB.")
    memory_free_mib: int = Field(description="Free memory in MiB at probe time.")
    driver: str | None = Field(default=None, description="NVIDIA driver version.")


class LabInfo(ToolModel):
    """What the lab can do on this machine, and how to fix what it cannot."""

    version: str = Field(description="research-mcp version.")
    platform: str = Field(description="Operating system, release and machine.")
    python: str = Field(description="Python implementation and version running the server.")
    workspace: str | None = Field(default=None, description="Absolute workspace folder; null when there is none.")
    workspace_source: str | None = Field(default=None, description="Where it came from: setting, roots or cwd.")
    workspace_problem: str | None = Field(default=None, description="Why there is no workspace, and how to set one.")
    state_db: str | None = Field(default=None, description="Path of the workspace's state database.")
    backends: list[str] = Field(description="Sandbox backends usable here, most preferred first.")
    components: list[Component] = Field(description="Every probed component with its status and fix.")
    gpus: list[Gpu] = Field(description="NVIDIA GPUs found; empty when there are none.")
    tokens: dict[str, bool] = Field(description="Whether each API token is set (never its value).")
    limits: dict[str, float | int] = Field(description="Output budgets and machine size (cpus, memory_gib, ...).")


Progress = Callable[[int, int, str], Awaitable[None]]
"""Told (done, total, message) as each probe finishes."""


async def probe_lab(
    settings: Settings,
    workspace: Workspace | None,
    workspace_problem: str | None = None,
    on_progress: Progress | None = None,
) -> LabInfo:
    """Probe every component concurrently, each bounded by `settings.probe_timeout_s`."""
    import platform

    import anyio

    system, timeout_s = sys.platform, settings.probe_timeout_s
    tex = _step(system, _TEX_APT, _TEX_MAC)
    gpus: list[Gpu] = []
    probes: list[tuple[str, Callable[[], Awaitable[Component]]]] = [
        ("docker", lambda: _probe_docker(settings.docker_image, system)),
        ("bubblewrap", lambda: _probe_bwrap(system)),
        ("slirp4netns", lambda: _probe_tool("slirp4netns", ["slirp4netns", "--version"], _SLIRP[system == "darwin"])),
        ("cgroups", lambda: anyio.to_thread.run_sync(_cgroup_component, system, abandon_on_cancel=True)),
        ("nvidia", lambda: _probe_nvidia(gpus, system)),
        ("tex", lambda: _probe_tool("tex", ["pdflatex", "--version"], tex)),
        ("latexmk", lambda: _probe_tool("latexmk", ["latexmk", "--version"], tex)),
        ("biber", lambda: _probe_tool("biber", ["biber", "--version"], tex)),
        ("bibtex", lambda: _probe_tool("bibtex", ["bibtex", "--version"], tex)),
        ("slurm", lambda: _probe_slurm(system)),
    ]
    found: dict[int, Component] = {}
    secrets = {"GITHUB_TOKEN": settings.github_token, "S2_API_KEY": settings.s2_api_key}
    limits: dict[str, float | int] = _base_limits(settings)

    async def bounded(index: int, name: str, probe: Callable[[], Awaitable[Component]]) -> None:
        with anyio.move_on_after(timeout_s) as scope:
            try:
                found[index] = await probe()
            except (OSError, ValueError, anyio.BrokenResourceError) as exc:
                logger.warning("lab probe %s failed: %r", name, exc)
                found[index] = _c(name, "error", f"probe failed: {exc!r}")
        if scope.cancelled_caught:
            logger.info("lab probe %s timed out after %g s", name, timeout_s)
            found[index] = _c(name, "timeout", f"no answer within {timeout_s:g} s (probe_timeout_s); probe stopped")
        if on_progress is not None:
            await on_progress(len(found), len(probes), f"{name}: {found[index].status}")

    async def disk_free() -> None:
        if workspace is not None:
            with anyio.move_on_after(timeout_s):
                usage = await anyio.to_thread.run_sync(shutil.disk_usage, workspace.root, abandon_on_cancel=True)
                limits["disk_free_gib"] = round(usage.free / 2**30, 1)

    async with anyio.create_task_group() as tg:
        for index, (name, probe) in enumerate(probes):
            tg.start_soon(bounded, index, name, probe)
        tg.start_soon(disk_free)

    components = [found[index] for index in range(len(probes))]
    ok = {c.name for c in components if c.ok}
    backends = [backend for component, backend in _BACKENDS if component in ok]
    if settings.allow_unsandboxed and "bubblewrap" not in ok and platform.system() == "Linux":
        backends.append("local")  # the user's choice; said loudly below and at the top of every such run's log
        for c in components:
            if c.name == "bubblewrap":
                c.detail += "; RESEARCH_MCP_ALLOW_UNSANDBOXED=1: local runs start WITHOUT a sandbox"
    return LabInfo(
        version=_package_version(),
        platform=platform.platform(),
        python=f"{platform.python_implementation()} {platform.python_version()}",
        workspace=str(workspace.root) if workspace else None,
        workspace_source=workspace.source if workspace else None,
        workspace_problem=workspace_problem,
        state_db=str(workspace.state_dir / "state.db") if workspace else None,
        backends=backends,
        components=components,
        gpus=sorted(gpus, key=lambda gpu: gpu.index),
        tokens={name: bool(secret and secret.get_secret_value()) for name, secret in secrets.items()},
        limits=limits,
    )


_BACKENDS = (("docker", "docker"), ("bubblewrap", "local"), ("slurm", "slurm"))


def format_report(info: LabInfo) -> str:
    """Human text for `research-mcp doctor`: one line per component, then the steps that fix what is missing."""
    lines = [f"research-mcp {info.version} · {info.python} · {info.platform}"]
    if info.workspace:
        lines.append(f"workspace: {info.workspace} (from {info.workspace_source}); state: {info.state_db}")
    else:
        lines.append(f"workspace: none ({info.workspace_problem or 'not set'})")
    lines.append(f"sandbox backends: {', '.join(info.backends) or 'none: no experiment can run until one is fixed'}")
    lines.append("")
    width = max((len(c.name) for c in info.components), default=0)
    lines.extend(f"{'✓' if c.ok else '✗'} {c.name:<{width}}  {c.status:<11}  {c.detail}" for c in info.components)
    lines.append("")
    gpu = "GPU {0.index}: {0.name}, {0.memory_total_mib} MiB ({0.memory_free_mib} MiB free), driver {0.driver}"
    lines.extend([gpu.format(g) for g in info.gpus] or ["GPUs: none"])
    lines.append("tokens: " + ", ".join(f"{name} {'set' if v else 'not set'}" for name, v in info.tokens.items()))
    lines.append("limits: " + ", ".join(f"{name}={value}" for name, value in info.limits.items()))
    steps: dict[str, list[str]] = {}
    for component in info.components:
        if component.install:
            steps.setdefault(component.install, []).append(component.name)
    if steps:
        lines += ["", "To fix:"]
        lines.extend(f"  {', '.join(names)}: {step}" for step, names in steps.items())
    return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class _Output:
    rc: int
    stdout: str
    stderr: str

    @property
    def line(self) -> str:
        """The first non-blank line of stdout, else of stderr."""
        return _first_line(self.stdout) or _first_line(self.stderr)


async def _run(argv: Sequence[str]) -> _Output:
    """Run argv in its own session with captured output; on cancellation kill its whole process group.

    Raises FileNotFoundError when the program does not exist. The caller bounds the time.
    """
    from subprocess import DEVNULL, PIPE

    import anyio

    env = {**os.environ, "LC_ALL": "C"}
    buffers = (bytearray(), bytearray())
    async with await anyio.open_process(
        list(argv), stdin=DEVNULL, stdout=PIPE, stderr=PIPE, cwd="/", env=env, start_new_session=True
    ) as process:
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(_drain, process.stdout, buffers[0])
                tg.start_soon(_drain, process.stderr, buffers[1])
            rc = await process.wait()
        except BaseException:
            _kill_group(process.pid)
            raise
    return _Output(rc, buffers[0].decode(errors="replace"), buffers[1].decode(errors="replace"))


async def _drain(stream: ByteReceiveStream | None, into: bytearray) -> None:
    if stream is None:
        return
    async for chunk in stream:
        if len(into) < _MAX_OUTPUT_BYTES:
            into += chunk[: _MAX_OUTPUT_BYTES - len(into)]


def _kill_group(pid: int) -> None:
    import signal

    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)  # start_new_session made the child its group's leader


def _c(name: str, status: str, detail: str, install: str | None = None, version: str | None = None) -> Component:
    ok = status == "ok"
    return Component(name=name, ok=ok, status=status, version=version, detail=_one_line(detail), install=install)


async def _probe_tool(name: str, argv: list[str], install: str) -> Component:
    """A program that prints its version: present and working, or the step that installs it."""
    try:
        out = await _run(argv)
    except FileNotFoundError:
        return _c(name, "missing", f"{argv[0]} not found on PATH", install)
    if out.rc != 0:
        return _c(name, "error", f"`{' '.join(argv)}` exited with {out.rc}: {out.line}", install)
    return _c(name, "ok", f"{out.line} ({shutil.which(argv[0]) or argv[0]})", version=_version(out.line))


@dataclass(frozen=True, slots=True)
class _Endpoint:
    path: str | None = None
    host: str = ""
    port: int = 0

    @property
    def label(self) -> str:
        return self.path if self.path is not None else f"tcp://{self.host}:{self.port}"


def _docker_endpoint(docker_host: str, system: str) -> _Endpoint | str:
    """Where the engine listens (DOCKER_HOST, else the default socket), or why the doctor cannot check it."""
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


async def _http_get(endpoint: _Endpoint, path: str) -> tuple[int, bytes]:
    """One raw HTTP/1.0 GET to the engine: (status, body)."""
    import anyio

    stream: ByteStream
    if endpoint.path is not None:
        stream = await anyio.connect_unix(endpoint.path)
    else:
        stream = await anyio.connect_tcp(endpoint.host, endpoint.port)
    data = bytearray()
    async with stream:
        await stream.send(f"GET {path} HTTP/1.0\r\nHost: docker\r\n\r\n".encode())
        with contextlib.suppress(anyio.EndOfStream):
            while len(data) < (1 << 20):
                data += await stream.receive()
    head, _, body = bytes(data).partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0].split()
    if len(status) < 2 or not status[1].isdigit():
        raise ValueError(f"not an HTTP answer from {endpoint.label}: {head[:60]!r}")
    return int(status[1]), body


async def _probe_docker(image: str, system: str) -> Component:
    """Ask the engine itself (`/_ping`, `/version`, `/images/<image>/json`): a CLI alone runs nothing."""
    import anyio

    endpoint = _docker_endpoint(os.environ.get("DOCKER_HOST", ""), system)
    if isinstance(endpoint, str):
        return _c("docker", "unsupported", endpoint)
    cli = shutil.which("docker")
    cli_note = f"docker CLI at {cli}" if cli else "no docker CLI on PATH (not needed)"
    try:
        ping, _ = await _http_get(endpoint, "/_ping")
    except (OSError, anyio.BrokenResourceError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else repr(exc)
        if isinstance(exc, PermissionError):
            install = "Let your user use the engine: `usermod -aG docker $USER`, then log in again"
        else:
            install = _step(system, "apt-get install -y docker.io && dockerd &", "Start Docker Desktop")
        return _c("docker", "unreachable", f"engine not reachable at {endpoint.label} ({reason}); {cli_note}", install)
    if ping != 200:
        return _c("docker", "error", f"engine at {endpoint.label} answered /_ping with HTTP {ping}")
    _, body = await _http_get(endpoint, "/version")
    parsed: object = json.loads(body or b"{}")
    about = cast(dict[str, object], parsed) if isinstance(parsed, dict) else {}
    version = str(about.get("Version") or "") or None
    found, _ = await _http_get(endpoint, f"/images/{quote(image, safe='/:@')}/json")
    presence = "present" if found == 200 else "missing"
    detail = f"engine {version} (API {about.get('ApiVersion')}) at {endpoint.label}; image {image} {presence}"
    install = None if found == 200 else _IMAGE_RECIPE.format(image=image)
    return _c("docker", "ok", f"{detail}; {cli_note}", install, version)


async def _probe_bwrap(system: str) -> Component:
    """Start a real namespace, as an unprivileged uid when we are root (VERIFIED.md section 7.4)."""
    if not system.startswith("linux"):
        return _c("bubblewrap", "unsupported", f"bubblewrap needs Linux namespaces, not {system}; use docker")
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return _c("bubblewrap", "missing", "bwrap not found on PATH", "apt-get install -y bubblewrap")
    argv, how = [bwrap, *_BWRAP_ARGS], ""
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            detail = "running as root: setpriv (util-linux) is needed to start bwrap as an unprivileged user"
            return _c("bubblewrap", "missing", detail, "apt-get install -y util-linux")
        argv, how = [setpriv, *_SETPRIV_ARGS, *argv], " as uid 65534 (via setpriv)"
    version = _version((await _run([bwrap, "--version"])).line)
    out = await _run(argv)
    if out.rc != 0:
        detail = f"bwrap could not start a namespace{how}: exit {out.rc}: {out.line}"
        return _c("bubblewrap", "error", detail, _USERNS_HINT, version)
    if os.geteuid() == 0:
        import anyio.to_thread

        from research_mcp.sandbox.bwrap import can_stage

        how += (
            "; folders closed to others on the way to a workspace (as /root is) are bound through a mount namespace"
            if await anyio.to_thread.run_sync(can_stage)
            else "; no mount namespace can be made here, so folders on the way to a workspace must be searchable by "
            "others (chmod o+x)"
        )
    return _c("bubblewrap", "ok", f"{bwrap} started a namespace{how}", version=version)


def _cgroup_component(
    system: str, root: Path = Path("/sys/fs/cgroup"), self_cgroup: Path = Path("/proc/self/cgroup")
) -> Component:
    """Which mechanism can hold a run's memory, pids and CPU: cgroup v2, cgroup v1, or rlimits only."""
    if not system.startswith("linux"):
        return _c("cgroups", "unsupported", f"cgroups are Linux-only; runs on {system} get rlimits only")
    wanted = ", ".join(_CGROUP_CONTROLLERS)
    fallback = "runs are limited by rlimits only (no memory/RSS, pids or CPU-share limit)"
    if (root / "cgroup.controllers").is_file():  # unified hierarchy
        own = next((ln[3:] for ln in self_cgroup.read_text().splitlines() if ln.startswith("0::")), "/")
        here = root / own.strip().lstrip("/")
        available = (here / "cgroup.controllers").read_text().split() if here.is_dir() else []
        lacking = [c for c in _CGROUP_CONTROLLERS if c not in available]
        if not lacking and os.access(here, os.W_OK):
            return _c("cgroups", "ok", f"cgroup v2: {wanted} delegated at {here}")
        why = f"controllers {', '.join(lacking)} not delegated" if lacking else "not writable"
        if os.geteuid() == 0:
            install = f"echo '+memory +pids +cpu' > {here.parent / 'cgroup.subtree_control'}"
        else:
            install = "Run the server in a delegated scope: `systemd-run --user --scope -p Delegate=yes research-mcp`"
        return _c("cgroups", "missing", f"cgroup v2 at {here}: {why}; {fallback}", install)
    mounted = [c for c in _CGROUP_CONTROLLERS if (root / c / "cgroup.procs").is_file()]
    writable = [c for c in mounted if os.access(root / c, os.W_OK)]
    if len(writable) == len(_CGROUP_CONTROLLERS):
        return _c("cgroups", "ok", f"cgroup v1: {root}/{{{','.join(writable)}}} writable")
    if mounted:
        detail = f"cgroup v1 mounted, but only {', '.join(writable) or 'none'} of {wanted} writable; {fallback}"
        return _c("cgroups", "missing", detail, "Run the server as root")
    return _c("cgroups", "missing", f"no cgroup controllers found; {fallback}")


def _parse_gpus(text: str) -> list[Gpu]:
    gpus: list[Gpu] = []
    for row in text.splitlines():
        cells = [cell.strip() for cell in row.split(",")]
        if len(cells) >= 5 and cells[0].isdigit():
            total, free = (int(cell) if cell.isdigit() else 0 for cell in cells[-3:-1])
            name = ", ".join(cells[1:-3])
            gpus.append(
                Gpu(index=int(cells[0]), name=name, memory_total_mib=total, memory_free_mib=free, driver=cells[-1])
            )
    return gpus


async def _probe_nvidia(gpus: list[Gpu], system: str) -> Component:
    if system == "darwin":
        return _c("nvidia", "unsupported", "macOS has no NVIDIA/CUDA driver; runs use the CPU")
    query = "--query-gpu=index,name,memory.total,memory.free,driver_version"
    try:
        out = await _run(["nvidia-smi", query, "--format=csv,noheader,nounits"])
    except FileNotFoundError:
        return _c("nvidia", "missing", "no NVIDIA driver (nvidia-smi not found)", _NVIDIA_INSTALL)
    found = _parse_gpus(out.stdout) if out.rc == 0 else []
    if not found:
        return _c("nvidia", "error", f"nvidia-smi found no usable GPU (exit {out.rc}): {out.line}", _NVIDIA_INSTALL)
    gpus.extend(found)
    driver = found[0].driver
    detail = f"{len(found)} GPU(s): " + ", ".join(f"{gpu.index}: {gpu.name}" for gpu in found)
    try:
        toolkit = await _run(["nvidia-ctk", "--version"])
    except FileNotFoundError:
        detail += "; NVIDIA Container Toolkit not found (Docker runs get no GPU)"
        return _c(
            "nvidia", "ok", detail, f"For GPU Docker runs install the NVIDIA Container Toolkit: {_TOOLKIT_URL}", driver
        )
    return _c("nvidia", "ok", f"{detail}; container toolkit {_version(toolkit.line)}", version=driver)


async def _probe_slurm(system: str) -> Component:
    """`sinfo --version` says Slurm is installed; `scontrol ping` says whether a controller answers."""
    debian = "apt-get install -y --no-install-recommends slurmctld slurmd slurm-client munge"
    install = _step(system, debian, "Slurm runs on Linux clusters: use the docker backend on macOS")
    try:
        version = _version((await _run(["sinfo", "--version"])).line)
    except FileNotFoundError:
        return _c("slurm", "missing", "sinfo not found on PATH", install)
    try:
        ping = await _run(["scontrol", "ping"])
    except FileNotFoundError:
        return _c("slurm", "error", f"sinfo {version} found, but not scontrol", install, version)
    if ping.rc == 0 and " UP" in ping.line:
        return _c("slurm", "ok", f"controller answers: {ping.line}", version=version)
    detail = f"no controller answers `scontrol ping` (exit {ping.rc}): {ping.line}"
    install = "Start slurmctld, slurmd and munged, or set SLURM_CONF to your cluster's slurm.conf"
    return _c("slurm", "unreachable", detail, install, version)


def _base_limits(settings: Settings) -> dict[str, float | int]:
    limits: dict[str, float | int] = {
        "max_output_chars": settings.max_output_chars,
        "max_file_bytes": settings.max_file_bytes,
        "probe_timeout_s": settings.probe_timeout_s,
    }
    if cpus := os.cpu_count():
        limits["cpus"] = cpus
    with contextlib.suppress(ValueError, OSError, AttributeError):
        limits["memory_gib"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    return limits


def _package_version() -> str:
    from importlib import metadata

    import research_mcp

    declared: object = getattr(research_mcp, "__version__", None)
    if isinstance(declared, str):
        return declared
    with contextlib.suppress(metadata.PackageNotFoundError):
        return metadata.version("research-mcp")
    return "0+unknown"


def _step(system: str, debian: str, macos: str) -> str:
    return macos if system == "darwin" else debian


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def _one_line(text: str, limit: int = 300) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _version(line: str) -> str | None:
    match = re.search(r"\d+(?:\.\d+)+[\w.+~-]*", line)
    return match.group(0) if match else None

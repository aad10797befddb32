"""The one bubblewrap command builder of the package: a sandbox that sees /usr, a minimal /etc and its own binds.

`Sandbox(...).argv()` returns the whole argv, to be run with `subprocess` (no shell). Every user value is its own
argv item right after the option it belongs to, and the command comes after `--`, so no value can become an
option. What the sandbox gets (VERIFIED.md section 6):

- its own user, pid, network, ipc, uts and cgroup namespaces (`--unshare-all --unshare-user`), no further user
  namespaces inside (`--disable-userns`), no capabilities, a new session, and death with its parent;
- /usr read-only with the usual /bin, /lib, /lib64, /sbin symlinks; a handful of /etc files (the loader cache,
  CA certificates, alternatives, Python's site config) plus a synthetic passwd/group; never `/`, never /run;
- a fresh /proc, a minimal /dev, a private /tmp tmpfs (size-capped), and /sys as an empty tmpfs holding only the
  CPU topology (the host's /sys lists its network interfaces);
- only the environment given (`--clearenv`).

When the caller is root, the argv starts with `setpriv` to an unprivileged uid/gid (65534 by default): a bwrap
started by root keeps host-root file access inside, which reaches /run/docker.sock and /etc/shadow. That user
cannot pass a folder closed to others (a workspace under /root, which is 0700): such binds are staged. The argv
then starts with `unshare --mount`, and a short `sh` script, still root but in a mount namespace of its own, mounts
a private tmpfs over `STAGING_POINT`, binds each such source onto it, and execs the rest; bwrap binds from there.
Nothing of it is seen outside that namespace, and only the bound folders themselves are reachable.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import shutil
import stat
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "NOBODY",
    "STAGING_POINT",
    "SYSTEM_BINDS",
    "Bind",
    "Sandbox",
    "etc_identity_files",
    "can_stage",
    "sandbox_user",
    "unreachable",
]

NOBODY = 65534
"""uid and gid the sandbox runs as when the server is root (Debian's nobody/nogroup)."""

STAGING_POINT = "/dev/shm"
"""Where binds the sandbox user cannot reach are staged: a private tmpfs mounted over it in the sandbox's own
mount namespace (the host's /dev/shm is untouched; the sandbox gets a /dev of its own)."""
_STAGE_SCRIPT = """\
mount -t tmpfs -o mode=0755,size=64k,nosuid,nodev research-mcp "$0" || exit 125
while [ "$1" != -- ]; do
  if [ -d "$1" ]; then mkdir -- "$2"; else : > "$2"; fi || exit 125
  mount --bind -- "$1" "$2" || exit 125
  shift 2
done
shift
exec "$@"
"""
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_FORBIDDEN_SOURCES = ("/run", "/var/run")


def _check_arg(what: str, value: str) -> None:
    if "\0" in value:
        raise ValueError(f"{what} contains a NUL byte")


def _check_path(what: str, path: str) -> None:
    _check_arg(what, path)
    if not path.startswith("/"):
        raise ValueError(f"{what} must be an absolute path, not {path!r}")
    if ".." in path.split("/"):
        raise ValueError(f"{what} must not contain '..': {path!r}")


@dataclass(frozen=True, slots=True)
class Bind:
    """One host path made visible in the sandbox."""

    source: str
    """Absolute host path."""
    dest: str
    """Absolute path inside the sandbox."""
    writable: bool = False
    device: bool = False
    """Bind a device node (`--dev-bind`), e.g. /dev/nvidia0."""
    optional: bool = False
    """Skip silently when the source does not exist (`--*-bind-try`)."""

    def __post_init__(self) -> None:
        _check_path("bind source", self.source)
        _check_path("bind destination", self.dest)
        real = os.path.realpath(self.source)
        if real == "/" or any(real == p or real.startswith(p + "/") for p in _FORBIDDEN_SOURCES):
            raise ValueError(f"refusing to bind {self.source!r}: never bind / or /run into a sandbox")
        if os.path.normpath(self.dest) == "/":
            raise ValueError("a bind destination cannot be /")

    def args(self) -> list[str]:
        option = "--dev-bind" if self.device else "--bind" if self.writable else "--ro-bind"
        return [option + ("-try" if self.optional else ""), self.source, self.dest]


SYSTEM_BINDS: tuple[Bind, ...] = (
    Bind("/usr", "/usr"),
    *(
        Bind(path, path, optional=True)
        for path in (
            "/etc/ld.so.cache",
            "/etc/ld.so.conf",
            "/etc/ld.so.conf.d",
            "/etc/alternatives",
            "/etc/ssl/certs",
            "/etc/ssl/openssl.cnf",
            "/etc/ca-certificates.conf",
            "/etc/nsswitch.conf",
            "/etc/localtime",
            "/etc/python3",
            "/etc/python3.11",
            "/etc/python3.12",
            "/etc/python3.13",
            "/etc/matplotlibrc",
            "/etc/fonts",  # fontconfig's configuration: matplotlib and Pillow read it at start
            "/sys/devices/system/cpu",
        )
    ),
)
"""Read-only host paths every sandbox gets; the `-try` ones may be absent."""


@dataclass(frozen=True, slots=True)
class Sandbox:
    """A bubblewrap sandbox around one command.

    `data` maps sandbox paths to open file descriptors whose content bwrap copies into a read-only file
    (`--ro-bind-data`); pass them to `subprocess` in `pass_fds`. `user` is the (uid, gid) to drop to with
    setpriv before bwrap starts; use `sandbox_user()` for the right default.
    """

    command: Sequence[str]
    binds: Sequence[Bind] = ()
    env: Mapping[str, str] = field(default_factory=dict[str, str])
    cwd: str = "/"
    share_net: bool = False
    data: Mapping[str, int] = field(default_factory=dict[str, int])
    tmp_size_bytes: int | None = 1 << 30
    status_fd: int | None = None
    block_fd: int | None = None
    """bwrap waits, namespaces made, until this fd is readable before it runs the command (a network is set up
    from outside meanwhile)."""
    """bwrap writes JSON lines there: {"child-pid": N} once the sandbox runs, then {"exit-code": N}."""
    user: tuple[int, int] | None = None
    system_binds: Sequence[Bind] = SYSTEM_BINDS
    hostname: str = "sandbox"
    bwrap: str = "bwrap"
    setpriv: str = "setpriv"
    stage: bool = True
    """As root, stage the binds the sandbox user cannot reach (see the module's docstring); callers check
    `can_stage()` first where that matters."""
    unshare: str = "unshare"

    def __post_init__(self) -> None:
        if not self.command:
            raise ValueError("a sandbox needs a command")
        for item in self.command:
            _check_arg("command argument", item)
        for name, value in self.env.items():
            if not _ENV_NAME.fullmatch(name):
                raise ValueError(f"invalid environment variable name {name!r}: use letters, digits and _")
            _check_arg(f"value of {name}", value)
        _check_path("working directory", self.cwd)
        for dest, fd in self.data.items():
            _check_path("data destination", dest)
            if fd < 0:
                raise ValueError(f"bad file descriptor {fd} for {dest!r}")
        if self.status_fd is not None and self.status_fd < 0:
            raise ValueError(f"bad status file descriptor {self.status_fd}")
        if self.block_fd is not None and self.block_fd < 0:
            raise ValueError(f"bad block file descriptor {self.block_fd}")
        if self.tmp_size_bytes is not None and self.tmp_size_bytes <= 0:
            raise ValueError("tmp_size_bytes must be positive")
        if self.user is not None and (self.user[0] <= 0 or self.user[1] <= 0):
            raise ValueError("the sandbox user must not be root (uid/gid 0)")
        _check_arg("hostname", self.hostname)

    def argv(self) -> list[str]:
        """The full argv: `[unshare ... --] [setpriv ... --] bwrap <options> -- <command>`."""
        binds, staged = self._staged()
        argv: list[str] = []
        if staged:
            argv += [self.unshare, "--mount", "--propagation", "private", "--", "/bin/sh", "-c", _STAGE_SCRIPT]
            argv += [STAGING_POINT, *(path for pair in staged for path in pair), "--"]
        if self.user is not None:
            uid, gid = self.user
            argv += [self.setpriv, f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--"]
        argv += [self.bwrap, "--unshare-all", "--unshare-user", "--disable-userns"]
        if self.status_fd is not None:
            argv += ["--json-status-fd", str(self.status_fd)]
        if self.block_fd is not None:
            argv += ["--block-fd", str(self.block_fd)]
        if self.share_net:
            argv.append("--share-net")
        argv += ["--die-with-parent", "--new-session", "--cap-drop", "ALL", "--hostname", self.hostname]
        argv += ["--symlink", "usr/bin", "/bin", "--symlink", "usr/sbin", "/sbin"]
        argv += ["--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64"]
        argv += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/sys"]
        if self.tmp_size_bytes is not None:
            argv += ["--size", str(self.tmp_size_bytes)]
        argv += ["--tmpfs", "/tmp", "--perms", "0755", "--dir", "/etc"]
        for bind in (*self.system_binds, *binds):
            argv += bind.args()
        for dest, fd in self.data.items():
            argv += ["--perms", "0644", "--ro-bind-data", str(fd), dest]
        argv += ["--remount-ro", "/", "--chdir", self.cwd, "--clearenv"]
        for name, value in self.env.items():
            argv += ["--setenv", name, value]
        return [*argv, "--", *self.command]

    def _staged(self) -> tuple[list[Bind], list[tuple[str, str]]]:
        """The binds as bwrap gets them, and the (source, staged path) pairs to mount first."""
        binds, staged = list(self.binds), list[tuple[str, str]]()
        if self.user is None or not self.stage:
            return binds, staged
        for i, bind in enumerate(binds):
            if bind.device or not os.path.exists(bind.source) or unreachable(Path(bind.source), *self.user) is None:
                continue
            target = f"{STAGING_POINT}/{len(staged)}"
            staged.append((bind.source, target))
            binds[i] = dataclasses.replace(bind, source=target)
        return binds, staged


@functools.cache
def can_stage() -> bool:
    """Whether binds can be staged here: root may make a mount namespace (not so in an unprivileged container)."""
    if os.geteuid() != 0 or not os.path.isdir(STAGING_POINT) or shutil.which("mount") is None:
        return False
    try:
        probe = ["unshare", "--mount", "--propagation", "private", "--", "true"]
        return subprocess.run(probe, capture_output=True, timeout=10, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def sandbox_user(uid: int = NOBODY, gid: int = NOBODY, euid: int | None = None) -> tuple[int, int] | None:
    """The (uid, gid) to drop to: the given ones when we are root, None (run as ourselves) otherwise."""
    return (uid, gid) if (os.geteuid() if euid is None else euid) == 0 else None


def etc_identity_files(uid: int, gid: int, name: str = "nobody", group: str = "nogroup") -> dict[str, bytes]:
    """A synthetic /etc/passwd and /etc/group naming only the sandbox user (the host's list its accounts)."""
    return {
        "/etc/passwd": f"{name}:x:{uid}:{gid}:{name}:/tmp:/usr/sbin/nologin\n".encode(),
        "/etc/group": f"{group}:x:{gid}:\n".encode(),
    }


def unreachable(path: Path, uid: int, gid: int) -> Path | None:
    """The first folder on the way to `path` (itself included) that uid:gid cannot search, if any.

    As root, a sandbox starts as `sandbox_user()`, so every host folder it binds must be searchable by that
    user; callers check first and name the folder to `chmod o+x`."""
    for folder in [*reversed(path.parents), path]:
        try:
            st = folder.stat()
        except OSError:
            return folder
        bit = stat.S_IXUSR if st.st_uid == uid else stat.S_IXGRP if st.st_gid == gid else stat.S_IXOTH
        if not st.st_mode & bit:
            return folder
    return None

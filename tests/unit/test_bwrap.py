"""The bubblewrap argv builder: what the sandbox sees, and that no value can turn into an option."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from research_mcp.sandbox.bwrap import NOBODY, STAGING_POINT, Bind, Sandbox, etc_identity_files, sandbox_user

# bwrap options this builder may emit, with how many values each takes (bwrap 0.8 `--help`).
ARITY = {
    "--unshare-all": 0, "--unshare-user": 0, "--disable-userns": 0, "--share-net": 0, "--die-with-parent": 0,
    "--new-session": 0, "--clearenv": 0, "--cap-drop": 1, "--hostname": 1, "--proc": 1, "--dev": 1, "--tmpfs": 1,
    "--size": 1, "--perms": 1, "--dir": 1, "--chdir": 1, "--remount-ro": 1, "--json-status-fd": 1,
    "--symlink": 2, "--setenv": 2, "--ro-bind-data": 2, "--bind": 2, "--ro-bind": 2, "--dev-bind": 2,
    "--bind-try": 2, "--ro-bind-try": 2, "--dev-bind-try": 2,
}  # fmt: skip
BIND_OPTIONS = {"--bind", "--ro-bind", "--dev-bind", "--bind-try", "--ro-bind-try", "--dev-bind-try"}


@dataclass
class Parsed:
    """An argv read back the way bwrap reads it."""

    prefix: list[str]
    options: list[tuple[str, tuple[str, ...]]] = field(default_factory=list[tuple[str, tuple[str, ...]]])
    command: list[str] = field(default_factory=list[str])

    def values(self, option: str) -> list[tuple[str, ...]]:
        return [args for name, args in self.options if name == option]

    @property
    def env(self) -> dict[str, str]:
        return {args[0]: args[1] for args in self.values("--setenv")}

    @property
    def binds(self) -> list[tuple[str, str, str]]:
        return [(name, args[0], args[1]) for name, args in self.options if name in BIND_OPTIONS]


def parse(argv: list[str]) -> Parsed:
    at = next(i for i, item in enumerate(argv) if item == "bwrap" or item.endswith("/bwrap"))
    parsed, i = Parsed(prefix=argv[:at]), at + 1
    while i < len(argv):
        item = argv[i]
        if item == "--":
            parsed.command = argv[i + 1 :]
            return parsed
        assert item in ARITY, f"unexpected option {item!r}: a value was read as an option"
        parsed.options.append((item, tuple(argv[i + 1 : i + 1 + ARITY[item]])))
        i += 1 + ARITY[item]
    raise AssertionError("no -- before the command")


def test_the_sandbox_gets_its_own_namespaces_no_capabilities_and_only_the_given_env() -> None:
    parsed = parse(Sandbox(["python3", "-c", "pass"], env={"A": "1"}).argv())
    flags = {name for name, args in parsed.options if not args}
    assert {"--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent", "--new-session"} <= flags
    assert {"--clearenv"} <= flags and "--share-net" not in flags
    assert parsed.values("--cap-drop") == [("ALL",)]
    assert parsed.env == {"A": "1"}
    assert parsed.command == ["python3", "-c", "pass"]


def test_only_usr_and_a_few_etc_files_are_bound_never_root_or_run() -> None:
    parsed = parse(Sandbox(["true"]).argv())
    sources = [source for _, source, _ in parsed.binds]
    assert "/usr" in sources and "/" not in sources
    assert not [s for s in sources if s.startswith(("/run", "/var/run", "/home", "/root"))]
    assert all(s == "/usr" or s.startswith(("/etc/", "/sys/devices/system/cpu")) for s in sources)
    assert "/etc/shadow" not in sources and "/etc/passwd" not in sources
    assert ("/proc",) in parsed.values("--proc") and ("/dev",) in parsed.values("--dev")
    assert {("/tmp",), ("/sys",)} <= set(parsed.values("--tmpfs"))
    assert ("usr/bin", "/bin") in parsed.values("--symlink") and ("usr/lib64", "/lib64") in parsed.values("--symlink")
    assert parsed.values("--remount-ro") == [("/",)]


def test_tmp_is_size_capped_just_before_its_tmpfs() -> None:
    argv = Sandbox(["true"], tmp_size_bytes=1 << 20).argv()
    at = argv.index("/tmp")
    assert argv[at - 3 : at] == ["--size", str(1 << 20), "--tmpfs"]


@pytest.mark.parametrize("source", ["/", "/run", "/run/docker.sock", "/var/run/docker.sock", "/usr/.."])
def test_binding_root_or_run_is_refused(source: str) -> None:
    with pytest.raises(ValueError):
        Bind(source, "/x")


@pytest.mark.parametrize("name", ["A=B", "", "1X", "A B", "-x", "A\0"])
def test_env_names_that_bwrap_or_a_shell_would_misread_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="environment variable name"):
        Sandbox(["true"], env={name: "v"})


def test_relative_or_dotted_paths_are_refused() -> None:
    for bad in ("work", "/work/../etc"):
        with pytest.raises(ValueError):
            Bind("/srv/x", bad)
        with pytest.raises(ValueError):
            Sandbox(["true"], cwd=bad)


def test_root_starts_bwrap_through_setpriv_as_an_unprivileged_user() -> None:
    user = sandbox_user(euid=0)
    assert user == (NOBODY, NOBODY)
    argv = Sandbox(["true"], user=user).argv()
    assert argv[:5] == ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"]
    assert argv[5] == "bwrap"
    assert sandbox_user(euid=1000) is None
    assert Sandbox(["true"]).argv()[0] == "bwrap"


def test_binds_the_sandbox_user_cannot_reach_are_staged_by_root_in_a_mount_namespace(tmp_path: Path) -> None:
    closed = tmp_path / "closed"  # like /root: 0700, so uid 65534 cannot pass it
    (closed / "work").mkdir(parents=True)
    closed.chmod(0o700)
    (tmp_path / "open" / "env").mkdir(parents=True)
    for folder in [tmp_path / "open" / "env", *(tmp_path / "open" / "env").parents]:
        if str(folder).startswith(str(tmp_path.parents[1])):  # pytest's folders are 0700: open them for search
            folder.chmod(folder.stat().st_mode | 0o011)
    binds = [
        Bind(str(closed / "work"), "/work", writable=True),
        Bind(str(tmp_path / "open" / "env"), "/env"),
        Bind(str(closed / "absent"), "/absent", optional=True),  # missing: bwrap's -try skips it, nothing to stage
    ]
    argv = Sandbox(["true"], binds, user=(NOBODY, NOBODY)).argv()
    assert argv[:8] == ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", argv[7]]
    assert argv[8:12] == [STAGING_POINT, str(closed / "work"), f"{STAGING_POINT}/0", "--"]
    assert argv[12] == "setpriv"
    parsed = parse(argv)
    assert ("--bind", f"{STAGING_POINT}/0", "/work") in parsed.binds
    assert ("--ro-bind", str(tmp_path / "open" / "env"), "/env") in parsed.binds
    assert ("--ro-bind-try", str(closed / "absent"), "/absent") in parsed.binds
    assert Sandbox(["true"], binds, user=(NOBODY, NOBODY), stage=False).argv()[0] == "setpriv"
    assert Sandbox(["true"], binds).argv()[0] == "bwrap"  # not root: binds are reached as ourselves


def test_the_sandbox_user_can_never_be_root() -> None:
    with pytest.raises(ValueError, match="root"):
        Sandbox(["true"], user=(0, 0))


def test_network_is_shared_only_when_asked() -> None:
    assert ("--share-net", ()) in parse(Sandbox(["true"], share_net=True).argv()).options


def test_data_files_and_the_status_fd_are_passed_by_descriptor() -> None:
    parsed = parse(Sandbox(["true"], data={"/etc/passwd": 5}, status_fd=7).argv())
    assert parsed.values("--ro-bind-data") == [("5", "/etc/passwd")]
    assert parsed.values("--json-status-fd") == [("7",)]


def test_the_synthetic_passwd_names_only_the_sandbox_user() -> None:
    files = etc_identity_files(65534, 65534)
    assert files["/etc/passwd"] == b"nobody:x:65534:65534:nobody:/tmp:/usr/sbin/nologin\n"
    assert files["/etc/group"] == b"nogroup:x:65534:\n"


_text = st.text(st.characters(exclude_characters="\0"), max_size=30)
_abs_path = st.lists(
    st.text(st.characters(exclude_characters="\0/"), min_size=1, max_size=10).filter(lambda p: p not in (".", "..")),
    min_size=1,
    max_size=4,
).map(lambda parts: "/" + "/".join(parts))


@given(
    command=st.lists(_text, min_size=1, max_size=5),
    env=st.dictionaries(st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True), _text, max_size=5),
    dests=st.lists(_abs_path, max_size=3),
    cwd=_abs_path,
    hostname=_text,
    user=st.none() | st.tuples(st.integers(1, 2**31), st.integers(1, 2**31)),
)
def test_no_user_value_can_become_an_option(
    command: list[str],
    env: dict[str, str],
    dests: list[str],
    cwd: str,
    hostname: str,
    user: tuple[int, int] | None,
) -> None:
    binds = [Bind("/srv/data", dest, writable=i % 2 == 0) for i, dest in enumerate(dests)]
    sandbox = Sandbox(command, binds, env, cwd, hostname=hostname, user=user)
    parsed = parse(sandbox.argv())
    assert parsed.command == command
    assert parsed.env == env
    assert parsed.values("--chdir") == [(cwd,)]
    assert parsed.values("--hostname") == [(hostname,)]
    assert [dest for _, source, dest in parsed.binds if source == "/srv/data"] == dests
    if user is None:
        assert parsed.prefix == []
    else:
        assert parsed.prefix[1:] == [f"--reuid={user[0]}", f"--regid={user[1]}", "--clear-groups", "--"]

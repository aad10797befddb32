"""Tarball unpacking: good archives unpack without their top folder; malicious ones are refused, leaving nothing."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from research_mcp.errors import RepoError, UnsafeArchiveError
from research_mcp.tools.repos.archive import ArchiveLimits, unpack_tarball

LIMITS = ArchiveLimits(max_unpacked_bytes=10 << 20, max_files=1000)
SHA = "900f3f8" + "0" * 33
Member = Callable[[tarfile.TarFile], None]


def regular(name: str, data: bytes = b"x") -> Member:
    def add(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))

    return add


def special(name: str, kind: bytes, linkname: str = "") -> Member:
    def add(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.linkname = linkname
        tar.addfile(info)

    return add


def build(path: Path, *members: Member, top: str | None = "owner-repo-900f3f8", commit: str | None = SHA) -> Path:
    headers = {"comment": commit} if commit else {}
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT, pax_headers=headers) as tar:
        if top:
            special(top + "/", tarfile.DIRTYPE)(tar)
        for member in members:
            member(tar)
    return path


def test_a_github_style_tarball_unpacks_without_its_top_folder(tmp_path: Path) -> None:
    archive = build(
        tmp_path / "a.tgz",
        regular("owner-repo-900f3f8/README.md", b"# hi\n"),
        special("owner-repo-900f3f8/src/", tarfile.DIRTYPE),
        regular("owner-repo-900f3f8/src/train.py", b"print(1)\n"),
        special("owner-repo-900f3f8/docs", tarfile.SYMTYPE, "src"),
        special("owner-repo-900f3f8/copy.py", tarfile.LNKTYPE, "owner-repo-900f3f8/src/train.py"),
    )
    dest = tmp_path / "out"
    unpacked = unpack_tarball(archive, dest, LIMITS)
    assert unpacked.commit == SHA and unpacked.files == 3 and unpacked.unpacked_bytes == 14
    assert (dest / "README.md").read_text() == "# hi\n"
    assert (dest / "src" / "train.py").read_text() == "print(1)\n"
    assert (dest / "docs").is_symlink() and (dest / "copy.py").read_text() == "print(1)\n"


@pytest.mark.parametrize(
    ("member", "says"),
    [
        (regular("owner-repo-900f3f8/../x"), "'..'"),
        (regular("/etc/x"), "absolute path"),
        (regular("owner-repo-900f3f8/a/../../x"), "'..'"),
        (special("owner-repo-900f3f8/link", tarfile.SYMTYPE, "../../outside"), "outside"),
        (special("owner-repo-900f3f8/link", tarfile.SYMTYPE, "/etc/passwd"), "absolute"),
        (special("owner-repo-900f3f8/hard", tarfile.LNKTYPE, "/etc/passwd"), "absolute"),
        (special("owner-repo-900f3f8/hard", tarfile.LNKTYPE, "owner-repo-900f3f8/missing"), "hard link"),
        (special("owner-repo-900f3f8/dev", tarfile.CHRTYPE), "device"),
        (special("owner-repo-900f3f8/blk", tarfile.BLKTYPE), "device"),
        (special("owner-repo-900f3f8/fifo", tarfile.FIFOTYPE), "FIFO"),
        (regular("other-top/x"), "single top folder"),
    ],
)
def test_a_malicious_member_refuses_the_whole_archive_and_leaves_nothing(
    tmp_path: Path, member: Member, says: str
) -> None:
    archive = build(tmp_path / "bad.tgz", regular("owner-repo-900f3f8/ok.txt"), member)
    dest = tmp_path / "out"
    with pytest.raises(UnsafeArchiveError, match="nothing was kept") as caught:
        unpack_tarball(archive, dest, LIMITS)
    assert says in str(caught.value)
    assert not dest.exists()


def test_a_file_written_through_an_inner_symlink_is_refused(tmp_path: Path) -> None:
    archive = build(
        tmp_path / "bad.tgz",
        special("owner-repo-900f3f8/up", tarfile.SYMTYPE, "."),
        regular("owner-repo-900f3f8/up/x.txt"),
    )
    with pytest.raises(UnsafeArchiveError, match="under a symbolic link"):
        unpack_tarball(archive, tmp_path / "out", LIMITS)
    assert not (tmp_path / "out").exists()


def test_a_link_that_escapes_only_through_another_link_is_caught_by_the_extraction_filter(tmp_path: Path) -> None:
    archive = build(
        tmp_path / "bad.tgz",
        special("owner-repo-900f3f8/d", tarfile.SYMTYPE, "."),
        special("owner-repo-900f3f8/e", tarfile.SYMTYPE, "d/d/../x"),  # lexically inside, really one level up
    )
    with pytest.raises(UnsafeArchiveError, match="nothing was kept"):
        unpack_tarball(archive, tmp_path / "out", LIMITS)
    assert not (tmp_path / "out").exists()


def test_a_duplicate_member_is_refused(tmp_path: Path) -> None:
    archive = build(tmp_path / "dup.tgz", regular("owner-repo-900f3f8/a"), regular("owner-repo-900f3f8/a", b"yy"))
    with pytest.raises(UnsafeArchiveError, match="appears twice"):
        unpack_tarball(archive, tmp_path / "out", LIMITS)


def test_a_one_gigabyte_sparse_member_is_refused_by_its_full_size(tmp_path: Path) -> None:
    top = tmp_path / "owner-repo-900f3f8"
    top.mkdir()
    with open(top / "big.bin", "wb") as handle:
        handle.truncate(1 << 30)  # a hole: no disk used
    archive = tmp_path / "sparse.tgz"
    subprocess.run(["tar", "--sparse", "-czf", str(archive), "-C", str(tmp_path), top.name], check=True)
    assert archive.stat().st_size < 1 << 20
    dest = tmp_path / "out"
    limits = ArchiveLimits(max_unpacked_bytes=1_000_000_000, max_files=1000)
    with pytest.raises(UnsafeArchiveError, match="unpacks to more than 1000000000 bytes"):
        unpack_tarball(archive, dest, limits)
    assert not dest.exists()


def ustar_headers(names: list[bytes]) -> bytes:
    """Empty regular-file members, written as raw ustar headers (tarfile's writer is slow for 100,000 of them)."""
    template = bytearray(512)
    for start, field in ((100, b"0000644\0"), (108, b"0000000\0"), (116, b"0000000\0"), (124, b"00000000000\0"),
                         (136, b"00000000000\0"), (148, b"        "), (156, b"0"), (257, b"ustar\x0000")):  # fmt: skip
        template[start : start + len(field)] = field
    base = sum(template)
    out = bytearray()
    for name in names:
        header = bytearray(template)
        header[: len(name)] = name
        header[148:156] = b"%06o\0 " % (base + sum(name))
        out += header
    return bytes(out + b"\0" * 1024)


def test_an_archive_of_100000_members_is_refused_at_the_file_cap(tmp_path: Path) -> None:
    archive = tmp_path / "many.tar"
    archive.write_bytes(ustar_headers([f"top/f{number}".encode() for number in range(100_000)]))
    with tarfile.open(archive) as tar:  # the raw headers are a valid archive
        first = tar.next()
        assert first is not None and first.name == "top/f0" and first.isreg()
    dest = tmp_path / "out"
    started = time.monotonic()
    with pytest.raises(UnsafeArchiveError, match="more than 50000 members"):
        unpack_tarball(archive, dest, ArchiveLimits(max_unpacked_bytes=1 << 30, max_files=50_000))
    assert time.monotonic() - started < 10
    assert not dest.exists()


def test_a_damaged_archive_is_refused_cleanly(tmp_path: Path) -> None:
    archive = tmp_path / "junk.tgz"
    archive.write_bytes(b"\x1f\x8b\x08\x00garbage" * 10)
    with pytest.raises(UnsafeArchiveError, match="damaged or not a tarball"):
        unpack_tarball(archive, tmp_path / "out", LIMITS)
    assert not (tmp_path / "out").exists()


def test_unpacking_past_the_deadline_stops(tmp_path: Path) -> None:
    archive = build(tmp_path / "a.tgz", regular("owner-repo-900f3f8/a.txt"))
    with pytest.raises(RepoError, match="too long"):
        unpack_tarball(archive, tmp_path / "out", ArchiveLimits(1 << 20, 100, deadline=time.monotonic() - 1))
    assert not (tmp_path / "out").exists()


_PART = st.sampled_from(["a", "b", "..", ".", "", "top"])
_PATH = st.lists(_PART, min_size=1, max_size=5).map("/".join)


def _lands_inside(path: str, inside: str) -> bool:
    """Whether `path` reaches only inside `inside`. A link that dangles or loops reaches no file, and
    `os.path.realpath` answers nonsense for a loop ('/a' for `a -> a//a`): where it points must be inside."""
    try:
        real = os.path.realpath(path, strict=True)
    except OSError:
        real = os.path.normpath(os.path.join(os.path.dirname(path), os.readlink(path)))
    return real == inside or real.startswith(inside + os.sep)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(link=_PATH, target=st.one_of(_PATH, _PATH.map(lambda p: "/" + p)), name=_PATH)
@example(link="a", target="a//a", name="a")  # a link to itself: realpath once said '/a'
def test_whatever_the_names_nothing_lands_outside_the_target(
    tmp_path_factory: pytest.TempPathFactory, link: str, target: str, name: str
) -> None:
    base = tmp_path_factory.mktemp("fuzz")
    archive = build(
        base / "f.tgz",
        special(f"top/{link}", tarfile.SYMTYPE, target),
        regular(f"top/{name}", b"payload"),
        top="top",
    )
    dest = base / "out"
    try:
        unpack_tarball(archive, dest, LIMITS)
    except UnsafeArchiveError:
        assert not dest.exists()
        return
    inside = os.path.realpath(dest)
    for folder, dirs, files in os.walk(dest):
        for entry in [*dirs, *files]:
            path = os.path.join(folder, entry)
            assert _lands_inside(path, inside), path
    assert [p for p in base.iterdir() if p.name not in ("f.tgz", "out")] == []

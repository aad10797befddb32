"""`python -m evals.bench.repos`: what safe unpacking and the repository summary cost.

A realistic repository tarball is built in a temporary folder (GitHub's layout: one top folder, a pax header
with the commit; 2,000 files of Python-like text, about 11 MB unpacked,
in /dev/shm where there is one), then, interleaved round by round with
the order swapped every round:

- ours: `unpack_tarball` (a header pass checking every member, then extraction with the `data` filter);
- python: `tarfile.extractall(filter="data")` alone, one pass (the floor for a safe Python extraction);
- gnu tar: `tar -xzf` (no safety checks at all), for scale.

Then `summarize` on the unpacked tree against a bare `os.walk` + `stat` of the same tree. Ratios are medians of
ours over the baseline measured in the same run. Targets: unpack at most 1.5x python, summary at most 2x the walk.
"""

from __future__ import annotations

import io
import os
import random
import shutil
import statistics
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from research_mcp.tools.repos.archive import ArchiveLimits, unpack_tarball
from research_mcp.tools.repos.summary import summarize

ROUNDS = 9
FILES = 2000
TARGETS = {"unpack vs python": 1.5, "summary vs walk": 2.0}
_WORDS = "def class return import self for in if else model loss train data batch optimizer step".split()


def build_tarball(path: Path, files: int = FILES, seed: int = 0) -> int:
    """A GitHub-style .tar.gz of `files` source files; the unpacked byte count."""
    rng = random.Random(seed)
    total = 0
    top = "owner-repo-abc1234"
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT, pax_headers={"comment": "a" * 40}) as tar:
        info = tarfile.TarInfo(top)
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
        for number in range(files):
            folder = f"pkg{number % 40}/sub{number % 7}"
            lines = [" ".join(rng.choices(_WORDS, k=rng.randint(3, 12))) for _ in range(rng.randint(20, 250))]
            data = ("\n".join(lines) + "\n").encode()
            info = tarfile.TarInfo(f"{top}/{folder}/module_{number}.py")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
            total += len(data)
        readme = b"# Repo\n\n```bash\npython train.py --epochs 3\n```\n"
        info = tarfile.TarInfo(f"{top}/README.md")
        info.size = len(readme)
        tar.addfile(info, io.BytesIO(readme))
    return total + len(readme)


def _timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def main() -> None:
    shm = Path("/dev/shm")  # tmpfs where there is one: the disk's noise would drown the overhead measured
    work = Path(tempfile.mkdtemp(prefix="bench-repos-", dir=shm if shm.is_dir() and os.access(shm, os.W_OK) else None))
    try:
        archive = work / "repo.tar.gz"
        unpacked = build_tarball(archive)
        limits = ArchiveLimits(max_unpacked_bytes=1 << 30, max_files=100_000)
        times: dict[str, list[float]] = {"ours": [], "python": [], "gnu tar": [], "summary": [], "walk": []}

        def ours(dest: Path) -> None:
            unpack_tarball(archive, dest, limits)

        def python(dest: Path) -> None:
            dest.mkdir()
            with tarfile.open(archive) as tar:
                tar.extractall(dest, filter="data")

        def gnu(dest: Path) -> None:
            dest.mkdir()
            subprocess.run(["tar", "-xzf", str(archive), "-C", str(dest)], check=True)

        def walk(root: Path) -> int:
            count = 0
            for folder, _, names in os.walk(root):
                for name in names:
                    os.stat(os.path.join(folder, name), follow_symlinks=False)
                    count += 1
            return count

        contenders = [("ours", ours), ("python", python), ("gnu tar", gnu)]
        tree = work / "tree"
        for round_number in range(ROUNDS):
            order = contenders if round_number % 2 == 0 else contenders[::-1]
            for label, unpack in order:
                dest = work / f"out-{label.replace(' ', '_')}"
                shutil.rmtree(dest, ignore_errors=True)
                times[label].append(_timed(lambda unpack=unpack, dest=dest: unpack(dest)))
                if label == "ours" and not tree.exists():
                    shutil.copytree(dest, tree)
            pair = [("summary", lambda: summarize(tree, "tree")), ("walk", lambda: walk(tree))]
            for label, action in pair if round_number % 2 == 0 else pair[::-1]:
                times[label].append(_timed(action))
        med = {label: statistics.median(values) for label, values in times.items()}
        print(f"repository tarball: {FILES + 1} files, {unpacked / 1e6:.1f} MB unpacked, "
              f"{archive.stat().st_size / 1e6:.1f} MB compressed; {ROUNDS} interleaved rounds, medians")  # fmt: skip
        for label in ("ours", "python", "gnu tar", "summary", "walk"):
            print(f"  {label:8s} {med[label] * 1000:8.1f} ms")
        ratios = {"unpack vs python": med["ours"] / med["python"], "summary vs walk": med["summary"] / med["walk"]}
        print(f"  unpack vs gnu tar {med['ours'] / med['gnu tar']:.2f}x (tar checks nothing)")
        for name, ratio in ratios.items():
            verdict = "ok" if ratio <= TARGETS[name] else "OVER TARGET"
            print(f"  {name}: {ratio:.2f}x (target <= {TARGETS[name]}x) {verdict}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

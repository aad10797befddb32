"""Datasets runs read at /data: where they come from, their manifests, and the caches and offline switches that
let code which downloads at run time find its files again with no network.

Layout inside every run (both backends): each entry of the workspace's `datasets/` folder is bound read-only at
`/data/<name>`, and each entry of the shared data folder (`RESEARCH_MCP_SHARED_DATA`, for data many projects use)
at `/data/<name>` too, unless the workspace has an entry of that name (the workspace's wins). Entries whose name
starts with a dot are the server's own (`.incoming/`, where `prepare_data` writes) and never mounted.

A manifest lists every file of a dataset with its size and sha256, and a hash over them all. Manifests are kept
by hash under `.research/manifests/`, and the last one of each dataset folder is found again by a walk of its
files' sizes and modification times (no reading), so a run start re-hashes only a dataset that changed. A run
start hashes at most `HASH_AT_START_BYTES` of changed data: a bigger dataset copied in by hand is recorded by its
files' sizes and modification times (`mtime:<ns>` in place of the sha256) until `prepare_data` makes it, which
always hashes in full (a tool call must answer within a minute; sha256 reads about 1 GB/s).

Caches: the usual cache variables (`HF_HOME`, `TORCH_HOME`, `XDG_CACHE_HOME`, ...) point below `/tmp/cache` in
every run. A `prepare_data` run binds that folder to its dataset's `.cache/`, so what a library downloads there
lands in the dataset. Later runs see every dataset's `.cache/` read-only, and get a writable layer over them:
`/tmp/cache` (on the run's private /tmp) is filled, before the command starts, with symbolic links to the cached
files (`cp -asn`): a library finds its files at the same paths, and may write lock files beside them. bubblewrap
here is 0.8.0 (its `--overlay-src` came with 0.9.0) and docker binds have no overlay, so the link layer is the
one way that works on both.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from research_mcp.errors import BadInputError
from research_mcp.fileio import atomic_write, sha256_of
from research_mcp.sandbox.base import Mount

__all__ = [
    "CACHE_ENV",
    "DATA_ROOT",
    "INCOMING",
    "OFFLINE_ENV",
    "SANDBOX_CACHE",
    "Dataset",
    "Manifest",
    "cache_layer_command",
    "check_name",
    "compare",
    "current_manifest",
    "dataset_mounts",
    "find_datasets",
    "hash_entries",
    "load_manifest",
    "make_manifest",
    "save_manifest",
]

DATA_ROOT = "/data"
SANDBOX_CACHE = "/tmp/cache"
CACHE_FOLDER = ".cache"
"""A dataset's own cache folder: what a library downloaded into `SANDBOX_CACHE` while it was prepared."""
INCOMING = ".incoming"
"""Folder of `datasets/` where a dataset is written while it is prepared; moved into place when it succeeds."""

CACHE_ENV: dict[str, str] = {
    "XDG_CACHE_HOME": SANDBOX_CACHE,
    "HF_HOME": f"{SANDBOX_CACHE}/huggingface",
    "HF_HUB_CACHE": f"{SANDBOX_CACHE}/huggingface/hub",
    "HF_DATASETS_CACHE": f"{SANDBOX_CACHE}/huggingface/datasets",
    "TORCH_HOME": f"{SANDBOX_CACHE}/torch",
    "KERAS_HOME": f"{SANDBOX_CACHE}/keras",
    "TFDS_DATA_DIR": f"{SANDBOX_CACHE}/tensorflow_datasets",
    "NLTK_DATA": f"{SANDBOX_CACHE}/nltk_data",
    "SENTENCE_TRANSFORMERS_HOME": f"{SANDBOX_CACHE}/sentence_transformers",
    "MPLCONFIGDIR": "/tmp/matplotlib",
}
"""Where libraries keep what they download, the same in every run of kind run or data."""

OFFLINE_ENV: dict[str, str] = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "WANDB_MODE": "offline",  # wandb.init() writes ./wandb and returns at once instead of waiting on the network
    "WANDB_SILENT": "true",
    "DO_NOT_TRACK": "1",
}
"""Switches that make libraries use their caches and never wait on a network a run without one does not have."""

HASH_AT_START_BYTES = 4 << 30
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_SHOWN = 12


def check_name(name: str) -> str:
    """A dataset name: one folder name of letters, digits, '.', '_' and '-' (it becomes /data/<name>)."""
    if not _NAME.fullmatch(name):
        raise BadInputError(
            f"Dataset name {name!r} is not usable: give one folder name of letters, digits, '.', '_' or '-' "
            "(at most 100, not starting with '.' or '-'); it becomes /data/<name>."
        )
    return name


@dataclass(frozen=True, slots=True)
class Dataset:
    name: str
    path: Path
    """The host file or folder (symlinks resolved)."""
    shared: bool


def find_datasets(workspace: Path, shared: Path | None) -> dict[str, Dataset]:
    """Every dataset a run sees, by name: the workspace's `datasets/` entries over the shared folder's."""
    found: dict[str, Dataset] = {}
    for top, is_shared in ((shared, True), (workspace / "datasets", False)):
        if top is None or not top.is_dir():
            continue
        for entry in sorted(top.iterdir()):
            if entry.name.startswith(".") or not _NAME.fullmatch(entry.name):
                continue
            real = Path(os.path.realpath(entry))
            if real.is_dir() or real.is_file():
                found[entry.name] = Dataset(entry.name, real, is_shared)
    return found


def dataset_mounts(datasets: Iterable[Dataset], taken: Iterable[str] = ()) -> list[Mount]:
    """Read-only binds at /data/<name>, leaving out destinations another mount takes."""
    busy = set(taken)
    return [
        Mount(source=str(d.path), dest=f"{DATA_ROOT}/{d.name}") for d in datasets if f"{DATA_ROOT}/{d.name}" not in busy
    ]


def cache_layer_command(names: Iterable[str]) -> str:
    """Shell lines that fill the run's writable /tmp/cache with links to these datasets' cached files."""
    lines = [f"mkdir -p {SANDBOX_CACHE}"]
    for name in names:
        source = shlex.quote(f"{DATA_ROOT}/{name}/{CACHE_FOLDER}/.")
        lines.append(f"cp -asn {source} {SANDBOX_CACHE}/ 2>/dev/null")
    return "\n".join(lines) + "\n"


# -- manifests -------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Manifest:
    """Every file of a dataset: relative path -> (size in bytes, sha256; a symlink's is `symlink:<target>`)."""

    files: dict[str, tuple[int, str]]
    hash: str

    @property
    def size_bytes(self) -> int:
        return sum(size for size, _ in self.files.values())

    def summary(self) -> dict[str, Any]:
        return {"hash": self.hash, "files": len(self.files), "size_bytes": self.size_bytes}


def hash_entries(files: Mapping[str, tuple[int, str]]) -> str:
    """The manifest hash: sha256 over each file's path, size and sha256, in path order."""
    digest = hashlib.sha256()
    for rel in sorted(files):
        size, sha = files[rel]
        digest.update(f"{rel}\x00{size}\x00{sha}\n".encode())
    return digest.hexdigest()


def _walk(root: Path) -> Iterable[tuple[str, Path]]:
    """(relative posix path, path) of every file or symlink under `root`, in order; a file root is itself."""
    if root.is_file() and not root.is_symlink():
        yield root.name, root
        return
    for folder, dirs, names in os.walk(root):
        dirs.sort()
        for name in sorted(names + [d for d in dirs if Path(folder, d).is_symlink()]):
            path = Path(folder, name)
            yield path.relative_to(root).as_posix(), path


def make_manifest(root: Path, max_hash_bytes: int | None = None) -> Manifest:
    """Hash every file under `root` (a folder or one file); symlinks are recorded by target, never followed. Past
    `max_hash_bytes` in all, files are recorded by size and modification time instead (`mtime:<ns>`)."""
    found = [(rel, path, path.lstat()) for rel, path in _walk(root)]
    total = sum(info.st_size for _, path, info in found if not path.is_symlink())
    read = max_hash_bytes is None or total <= max_hash_bytes
    files: dict[str, tuple[int, str]] = {}
    for rel, path, info in found:
        if path.is_symlink():
            files[rel] = (0, "symlink:" + os.readlink(path))
        elif path.is_file():
            files[rel] = (info.st_size, sha256_of(path) if read else f"mtime:{info.st_mtime_ns}")
    return Manifest(files, hash_entries(files))


def _signature(root: Path) -> str:
    """A hash of every file's path, size and modification time: changes when the dataset does, without reading it."""
    digest = hashlib.sha256()
    for rel, path in _walk(root):
        info = path.lstat()
        digest.update(f"{rel}\x00{info.st_size}\x00{info.st_mtime_ns}\x00{info.st_mode}\n".encode())
    return digest.hexdigest()


def _store(state_dir: Path) -> Path:
    return state_dir / "manifests"


def save_manifest(state_dir: Path, manifest: Manifest) -> None:
    """Keep a manifest by its hash (so a later rerun can name the files that changed)."""
    target = _store(state_dir) / f"{manifest.hash}.json"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, json.dumps({"hash": manifest.hash, "files": manifest.files}).encode())


def load_manifest(state_dir: Path, manifest_hash: str) -> Manifest | None:
    if not re.fullmatch(r"[0-9a-f]{64}", manifest_hash):
        return None
    try:
        raw = json.loads((_store(state_dir) / f"{manifest_hash}.json").read_text())
    except (OSError, ValueError):
        return None
    files = {str(rel): (int(entry[0]), str(entry[1])) for rel, entry in raw["files"].items()}
    return Manifest(files, str(raw["hash"]))


def current_manifest(state_dir: Path, path: Path, max_hash_bytes: int | None = None) -> Manifest:
    """The manifest of a dataset as it is now: the last one made for this folder while its files' sizes and
    times are unchanged (and, with `max_hash_bytes` None, hashed in full), else made anew (and kept)."""
    index = _store(state_dir) / "index" / (hashlib.sha256(str(path).encode()).hexdigest()[:32] + ".json")
    signature = _signature(path)
    try:
        known = json.loads(index.read_text())
        if known.get("signature") == signature and (found := load_manifest(state_dir, known["hash"])) is not None:
            if max_hash_bytes is not None or not any(sha.startswith("mtime:") for _, sha in found.files.values()):
                return found
    except (OSError, ValueError, KeyError):
        pass  # never seen, or seen otherwise: hash it
    manifest = make_manifest(path, max_hash_bytes)
    save_manifest(state_dir, manifest)
    index.parent.mkdir(parents=True, exist_ok=True)
    payload = {"path": str(path), "signature": signature, "hash": manifest.hash}
    atomic_write(index, json.dumps(payload).encode())
    return manifest


def compare(before: Manifest | None, now: Manifest) -> list[str]:
    """What changed, one phrase per file ('changed x', 'added y', 'removed z'); unknown when `before` is gone."""
    if before is None:
        return ["its earlier manifest is not kept, so the files that changed cannot be named"]
    found: list[str] = []
    for rel in sorted(before.files.keys() | now.files.keys()):
        old, new = before.files.get(rel), now.files.get(rel)
        if old == new:
            continue
        found.append(f"added {rel}" if old is None else f"removed {rel}" if new is None else f"changed {rel}")
    return found


def shown(manifest_hash: str) -> str:
    return manifest_hash[:_SHOWN]

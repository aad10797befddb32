"""Earlier runs' files as a run's inputs: `inputs={"run_0": "<run_id>:run_0"}` places a folder or file of an
earlier run at `run_0` in the new run's working tree, bound read-only (both backends bind), recorded with its
manifest hash and counted in the new run's code hash.

The source is `<run_id>:<path>`: `path` inside the run's `work/` (its working tree), else its `outputs/`; a path
starting `work/` or `outputs/` says which; `<run_id>` alone is its whole `outputs/`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from research_mcp.errors import BadInputError

__all__ = ["MAX_INPUTS", "InputSpec", "code_hash_with", "parse_inputs"]

MAX_INPUTS = 64
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


@dataclass(frozen=True, slots=True)
class InputSpec:
    """One input as asked: where it goes (relative to the run's working tree) and where it comes from."""

    dest: str
    run_id: str
    path: str
    """Relative to the source run's folder when it starts `work/` or `outputs/`; else looked up in both."""


def _relative(what: str, raw: str) -> str:
    if not raw or "\x00" in raw or raw.startswith("/") or "\\" in raw:
        raise BadInputError(f"{what} {raw!r} must be a relative path.")
    parts = [part for part in PurePosixPath(raw).parts if part != "."]
    if not parts or ".." in parts:
        raise BadInputError(f"{what} {raw!r} must be a relative path inside the folder, without '..'.")
    return "/".join(parts)


def parse_inputs(raw: Mapping[str, str] | None) -> list[InputSpec]:
    """Check `inputs` as the model gave them; sorted by destination. Destinations may not nest in each other."""
    if not raw:
        return []
    if len(raw) > MAX_INPUTS:
        raise BadInputError(f"{len(raw)} inputs asked for; at most {MAX_INPUTS}. Give a folder instead of its files.")
    found: list[InputSpec] = []
    for dest, source in raw.items():
        where = _relative("inputs destination", dest)
        run_id, colon, path = source.partition(":")
        if not _RUN_ID.fullmatch(run_id):
            raise BadInputError(
                f"inputs[{dest!r}] = {source!r}: give '<run_id>:<path>', e.g. '20250101-120000-ab12cd:run_0' "
                "(list_runs shows run ids)."
            )
        found.append(InputSpec(where, run_id, _relative(f"inputs[{dest!r}] path", path) if colon else "outputs"))
    found.sort(key=lambda spec: spec.dest)
    for first, second in zip(found, found[1:], strict=False):
        if second.dest == first.dest or second.dest.startswith(first.dest + "/"):
            raise BadInputError(
                f"inputs destinations {first.dest!r} and {second.dest!r} overlap; give distinct folders."
            )
    return found


def candidates(path: str) -> list[str]:
    """Where in the source run's folder `path` may be, in the order looked."""
    if path == "outputs" or path.startswith(("work/", "outputs/")) or path == "work":
        return [path]
    return [f"work/{path}", f"outputs/{path}"]


def resolve_source(run_dir: Path, spec: InputSpec) -> tuple[str, Path]:
    """The source's path relative to its run folder, and its host path; refuses one that leaves the run folder."""
    top = run_dir.resolve()
    for rel in candidates(spec.path):
        path = run_dir / rel
        if not (path.exists() or path.is_symlink()):
            continue
        real = path.resolve()
        if not (real.is_relative_to(top / "work") or real.is_relative_to(top / "outputs")):
            raise BadInputError(f"inputs[{spec.dest!r}]: {rel} of run {spec.run_id} leads outside that run's folder.")
        return rel, real
    shown = ", ".join(_entries(run_dir / "work") + [f"outputs/{e}" for e in _entries(run_dir / "outputs")]) or "none"
    raise BadInputError(
        f"inputs[{spec.dest!r}]: run {spec.run_id} has no {spec.path!r} in work/ or outputs/. Its files start "
        f"with: {shown}."
    )


def _entries(folder: Path, most: int = 8) -> list[str]:
    try:
        return sorted(entry.name for entry in folder.iterdir())[:most]
    except OSError:
        return []


def code_hash_with(code_hash: str, hashes: Sequence[tuple[str, str]]) -> str:
    """The code hash of a run with inputs: its snapshot's hash and each input's destination and manifest hash."""
    if not hashes:
        return code_hash
    digest = hashlib.sha256(f"{code_hash}\n".encode())
    for dest, manifest_hash in sorted(hashes):
        digest.update(f"input\x00{dest}\x00{manifest_hash}\n".encode())
    return digest.hexdigest()

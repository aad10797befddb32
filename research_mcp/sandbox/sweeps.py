"""Sweeps: a grid of configurations times seeds asked for in one call, each member a normal run.

A member gets its configuration as `RESEARCH_CONFIG` (JSON) and its seed as `RESEARCH_SEED`; where the command
names a grid key in braces (`--lr {lr}`) the value takes its place, shell-quoted, and `{seed}` the seed. Braces
that name no grid key (`python -c "d = {}"`) stay as they are. Every member runs the same code: it is snapshotted
and hashed once, and the sweep with all its members is recorded in one transaction.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from research_mcp.errors import BadInputError
from research_mcp.sandbox.models import RunRequest
from research_mcp.sandbox.runs import RunManager, new_run_id

__all__ = ["MAX_MEMBERS", "Member", "config_name", "members", "prepare_sweep", "substitute"]

MAX_MEMBERS = 1000
"""Most runs one sweep may ask for (configurations times seeds)."""
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_BRACED = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_LABEL_MAX = 200


def value_text(value: object) -> str:
    """A grid value as the command and the configuration's name show it: a string as it is, anything else as
    JSON (`0.1`, `true`, `[1, 2]`)."""
    return value if isinstance(value, str) else json.dumps(value)


def substitute(command: str, values: Mapping[str, object]) -> str:
    """`command` with each `{key}` that names a key of `values` replaced by its value, shell-quoted (one literal
    word for /bin/sh, whatever quotes, spaces or `$(...)` it holds); other braces are left as they are."""

    def one(match: re.Match[str]) -> str:
        key = match.group(1)
        return shlex.quote(value_text(values[key])) if key in values else match.group(0)

    return _BRACED.sub(one, command)


def config_name(config: Mapping[str, object]) -> str:
    """A configuration as a group is named: `lr=0.1,wd=0`, in the grid's key order."""
    return ",".join(f"{key}={value_text(value)}" for key, value in config.items())


@dataclass(frozen=True, slots=True)
class Member:
    """One run of a sweep: its configuration (a point of the grid) and seed."""

    config: dict[str, Any]
    seed: int | None


def members(grid: Mapping[str, Sequence[Any]] | None, seeds: Sequence[int] | None) -> list[Member]:
    """Every configuration of the grid times every seed, seed by seed (each seed covers the whole grid before the
    next starts, so partial results already span every configuration); refused past MAX_MEMBERS."""
    grid = dict(grid or {})
    if not grid and not seeds:
        raise BadInputError(
            "Give a grid ({'lr': [0.1, 0.01]}) or seeds ([0, 1, 2]), or both: there is nothing to sweep."
        )
    for key, values in grid.items():
        if not _KEY.fullmatch(key):
            raise BadInputError(f"Grid key {key!r} must be a name (letters, digits, '_'), so that {{key}} can name it.")
        if key == "seed":
            raise BadInputError("'seed' is not a grid key: give the seeds as seeds=[...]; {seed} names each one.")
        if not values:
            raise BadInputError(f"Grid key {key!r} has no values; give at least one.")
        texts = [json.dumps(value, sort_keys=True) for value in values]
        if len(set(texts)) < len(texts):
            raise BadInputError(f"Grid key {key!r} lists a value twice; each configuration is run once per seed.")
    if seeds is not None and len(set(seeds)) < len(seeds):
        raise BadInputError("seeds lists a seed twice; give distinct seeds.")
    size = math.prod(len(values) for values in grid.values()) * max(1, len(seeds or []))
    if size > MAX_MEMBERS:
        raise BadInputError(
            f"The sweep would be {size} runs; at most {MAX_MEMBERS} in one sweep. Use fewer values or seeds, or "
            "split it into several sweeps."
        )
    points = [dict(zip(grid, combo, strict=True)) for combo in itertools.product(*grid.values())]
    return [Member(point, seed) for seed in (seeds or [None]) for point in points]


def member_label(label: str | None, config: Mapping[str, object]) -> str | None:
    """A member's label, the same for every seed of a configuration: `lr=0.1,wd=0`, after `label/` when given."""
    if not config:
        return label
    name = config_name(config)
    found = f"{label}/{name}" if label else name
    if len(found) > _LABEL_MAX:
        raise BadInputError(
            f"The configuration name {found[:80]!r}... is over {_LABEL_MAX} characters (it labels the runs); use "
            "shorter grid keys or values."
        )
    return found


def prepare_sweep(
    runs: RunManager, base: RunRequest, grid: Mapping[str, Sequence[Any]] | None, seeds: Sequence[int] | None
) -> str:
    """Record the sweep and every member as queued runs (sync: call it in a worker thread); its id.

    `base` holds the run options every member shares (its command with the braces still in it, label, note)."""
    found = members(grid, seeds)
    varying = {key for key, values in (grid or {}).items() if len(values) > 1}
    reqs: list[RunRequest] = []
    for member in found:
        # a label names what tells configurations apart: the keys with more than one value
        shown = {k: v for k, v in member.config.items() if k in varying} if varying or base.label else member.config
        values: dict[str, object] = dict(member.config)
        env = {**base.env, "RESEARCH_CONFIG": json.dumps(member.config)}
        if member.seed is not None:
            values["seed"] = member.seed
            env["RESEARCH_SEED"] = str(member.seed)
        update = {
            "command": substitute(base.command, values),
            "env": env,
            "label": member_label(base.label, shown),
            "config": member.config or None,
            "seed": member.seed,
        }
        reqs.append(base.model_copy(update=update))
    if any(len(req.command) > 20_000 for req in reqs):
        raise BadInputError("A member's command, with its values in place, is over 20,000 characters.")
    sweep_id = "sweep-" + new_run_id()
    grid_json = json.dumps(dict(grid or {}))
    data = json.dumps({"label": base.label, "size": len(reqs)})

    def record(conn: Any, backend: str) -> None:
        conn.execute(
            "INSERT INTO sweeps (id, command, grid, seeds, backend, data, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (sweep_id, base.command, grid_json, json.dumps(list(seeds or [])), backend, data, runs.clock()),
        )

    runs.prepare_batch(reqs, sweep_id=sweep_id, record=record)
    return sweep_id

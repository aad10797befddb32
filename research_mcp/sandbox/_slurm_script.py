"""The batch scripts of the slurm backend: pure functions of a run's spec and the site's settings.

Each run gets a batch script: `#SBATCH` lines (CPUs, memory, GPUs, a time limit from the timeout plus a
margin, partition / account / qos, the job named after the run) and a bash body that runs the command contained
(the local backend's bubblewrap command, or Apptainer or Pyxis), enforces `timeout_s` itself with `timeout` (Slurm
rounds `--time` up to minutes, and the limit must hold while the server is down), and writes the run's end into
the run folder (`end.json`: exit code, failure, times), so a server restarted after Slurm forgot the job still
learns how it ended. Several runs with the same `batch_key` go as one job array, whose script picks the member's
folder, command and environment by `SLURM_ARRAY_TASK_ID` from tables at its top.

Files the job writes in the run folder: `job.sh` (its script, copied from Slurm's spool when it starts; before, it
is `scontrol write batch_script <job> -`), `log.txt` (the command's output, capped at its end), `started.json`
(job id, node, start), `end.json`, `slurm-<job>.out` (Slurm's own messages).
"""

from __future__ import annotations

import dataclasses
import math
import posixpath
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from research_mcp.sandbox._layout import LOG_CAP_MARKER, SANDBOX_OUTPUTS, SANDBOX_WORK
from research_mcp.sandbox._supervised import TAIL_WINDOW_BYTES, build_sandbox
from research_mcp.sandbox.base import RunSpec
from research_mcp.sandbox.bwrap import Bind, etc_identity_files

__all__ = [
    "END_FILE",
    "JOB_PREFIX",
    "STARTED_FILE",
    "Container",
    "Resources",
    "Site",
    "array_members",
    "array_script",
    "batch_key",
    "job_name",
    "job_script",
    "resources",
    "time_limit",
]

Container = Literal["bwrap", "apptainer", "pyxis", "none"]
END_FILE = "end.json"
STARTED_FILE = "started.json"
JOB_PREFIX = "rmcp-"
PASSED_VARS = r"SLURM_*|CUDA_VISIBLE_DEVICES|GPU_DEVICE_ORDINAL|ROCR_VISIBLE_DEVICES|HIP_VISIBLE_DEVICES"
"""Variables of the job that reach the command inside its sandbox (a bash `case` pattern)."""
_KILL_AFTER_S = 5
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
EXPORTED = "PATH,HOME,USER,LANG,TMPDIR"
"""What the job gets of the server's environment (with SLURM_*): never its tokens."""


@dataclass(frozen=True, slots=True)
class Site:
    """What the site's settings say about jobs (`Settings.slurm_*`)."""

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    gpu_option: Literal["gres", "gpus"] = "gres"
    gpu_type: str | None = None
    array_throttle: int = 0
    container: Container = "bwrap"
    image: str | None = None
    binds: tuple[str, ...] = ()
    time_margin_s: int = 60
    sbatch_args: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Resources:
    """What a job asks Slurm for; runs with equal resources can share one job array."""

    cpus: int
    memory_mib: int | None
    gpus: int
    time: str


def job_name(run_id: str) -> str:
    return JOB_PREFIX + run_id


def time_limit(timeout_s: float, margin_s: int) -> str:
    """`--time` for a run: its timeout plus the margin, rounded up to whole minutes, as D-HH:MM:SS."""
    minutes = max(1, math.ceil((timeout_s + margin_s) / 60))
    days, rest = divmod(minutes, 24 * 60)
    return f"{days}-{rest // 60:02d}:{rest % 60:02d}:00"


def resources(spec: RunSpec, site: Site) -> Resources:
    memory = None if spec.memory_bytes is None else math.ceil(spec.memory_bytes / (1 << 20))
    cpus = max(1, math.ceil(spec.cpus)) if spec.cpus else 1
    return Resources(cpus, memory, len(spec.gpus), time_limit(spec.timeout_s, site.time_margin_s))


def _header(res: Resources, site: Site, name: str, output: str, array: str | None = None) -> list[str]:
    options = [f"--job-name={name}", f"--output={output}", f"--export={EXPORTED}", "--ntasks=1"]
    options.append(f"--cpus-per-task={res.cpus}")
    if res.memory_mib is not None:
        options.append(f"--mem={res.memory_mib}M")
    options.append(f"--time={res.time}")
    if res.gpus:
        kind = f"gpu:{site.gpu_type}" if site.gpu_type else "gpu"
        options.append(f"--gres={kind}:{res.gpus}" if site.gpu_option == "gres" else f"--gpus={kind}:{res.gpus}")
    for option, value in (("partition", site.partition), ("account", site.account), ("qos", site.qos)):
        if value:
            options.append(f"--{option}={value}")
    if array is not None:
        options.append(f"--array={array}")
    options += site.sbatch_args
    return ["#!/bin/bash", *(f"#SBATCH {option}" for option in options)]


def array_range(count: int, throttle: int) -> str:
    return f"0-{count - 1}" + (f"%{throttle}" if throttle > 0 else "")


def batch_key(spec: RunSpec) -> tuple[object, ...]:
    """Runs with equal keys share one job array: the same resources and the same script apart from the run folder,
    the command and the environment."""
    mounts = tuple((m.source, m.dest, m.writable, m.volume) for m in spec.mounts)
    return (spec.cpus, spec.memory_bytes, len(spec.gpus), spec.timeout_s, spec.workdir, tuple(spec.ro_paths), mounts,
            spec.network, spec.unsandboxed, spec.log_cap_bytes, spec.image)  # fmt: skip


def job_script(spec: RunSpec, site: Site, user: tuple[int, int] | None) -> str:
    """The whole `job.sh` of one run (raises ValueError for a spec the container setting cannot run)."""
    res = resources(spec, site)
    header = _header(res, site, job_name(spec.run_id), str(spec.run_dir / "slurm-%j.out"))
    member = [f"run={_q(spec.run_dir)}", f"command={_q(spec.command)}", f"envs=({_env_words(spec.env)})"]
    return "\n".join([*header, f"# research-mcp run {spec.run_id}", *member, _body(spec, site, user)])


def array_script(specs: Sequence[RunSpec], site: Site, user: tuple[int, int] | None) -> str:
    """One job array for runs with the same `batch_key`: task i runs specs[i] (its folder, command and environment
    picked from the tables at the top). Named after the first run, whose folder gets Slurm's messages."""
    first = specs[0]
    header = _header(
        resources(first, site),
        site,
        job_name(first.run_id),
        str(first.run_dir / "slurm-%A_%a.out"),
        array_range(len(specs), site.array_throttle),
    )
    shared = dict(first.env)  # what every member's environment has (thread counts): written once
    for spec in specs[1:]:
        shared = {name: value for name, value in shared.items() if spec.env.get(name) == value}
    lines = [
        f"# research-mcp runs {first.run_id} .. {specs[-1].run_id}, one per array task",
        "i=${SLURM_ARRAY_TASK_ID:-0}",
        *_runs_table(specs),
        f"shared=({_env_words(shared)})",
        'case "$i" in',
        *(
            f'{i}) command={_q(spec.command)}; envs=("${{shared[@]}}" '
            f"{_env_words({k: v for k, v in spec.env.items() if k not in shared} if shared else spec.env)}) ;;"
            for i, spec in enumerate(specs)
        ),
        '*) echo "no run for array task $i" >&2; exit 1 ;;',
        "esac",
    ]
    return "\n".join([*header, *lines, _body(first, site, user)])


_PLAIN_NAMES = re.compile(r"[A-Za-z0-9_.-]+(?: [A-Za-z0-9_.-]+)*")


def _runs_table(specs: Sequence[RunSpec]) -> list[str]:
    """Lines that set `run` to task i's folder: `top` and the folders' plain names where they are side by side (as
    the run manager makes them), else every folder in full."""
    dirs = [str(spec.run_dir) for spec in specs]
    top = str(specs[0].run_dir.parent)
    names = " ".join(folder[len(top) + 1 :] for folder in dirs)
    if all(folder.startswith(top + "/") for folder in dirs) and _PLAIN_NAMES.fullmatch(names) and "/" not in names:
        return [f"top={_q(top)}", f"runs=({names})", 'run="$top/${runs[$i]}"']
    return ["runs=(" + " ".join(_q(folder) for folder in dirs) + ")", 'run="${runs[$i]}"']


def array_members(script: str) -> list[str]:
    """The run folders an array script names, in task order."""
    lines = script.splitlines()
    line = next((ln for ln in lines if ln.startswith("runs=(") and ln.endswith(")")), "runs=()")
    folders = shlex.split(line[len("runs=(") : -1])
    top = next((shlex.split(ln[len("top=") :]) for ln in lines if ln.startswith("top=")), None)
    return [f"{top[0]}/{name}" for name in folders] if top else folders


_CHECKED_NAMES: set[str] = set()


def _env_words(env: dict[str, str]) -> str:
    words: list[str] = []
    for name, value in env.items():
        if name not in _CHECKED_NAMES:
            if not _ENV_NAME.fullmatch(name):
                raise ValueError(f"invalid environment variable name {name!r}: use letters, digits and _")
            _CHECKED_NAMES.add(name)
        if "\0" in value:
            raise ValueError(f"the value of {name} contains a NUL byte")
        if name != "RESEARCH_OUT":  # the sandbox's own
            words += [name, _q(value)]  # a checked name is a plain word
    return " ".join(words)


def _seconds(value: float) -> str:
    return str(int(value)) if value == int(value) else repr(value)


def _q(value: str | Path) -> str:
    return shlex.quote(value if isinstance(value, str) else str(value))


_COMMAND = "@@research-mcp-command@@"
"""Stands for the member's command while the shared part of the script is built."""


class _Words:
    """argv items as bash words, the template run's folder written "$run" and the command "$command"."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = str(run_dir)
        self.folder = re.compile(re.escape(self.run_dir) + r"(?=/|$)")

    def word(self, item: str) -> str:
        if item == _COMMAND:
            return '"$command"'
        if self.run_dir not in item:
            return _q(item)
        parts = self.folder.split(item)
        return _q(item) if len(parts) == 1 else '"$run"'.join(_q(p) if p else "" for p in parts)

    def array(self, name: str, items: Sequence[str]) -> str:
        return f"{name}=(" + " ".join(self.word(item) for item in items) + ")"


_BODIES: dict[tuple[object, ...], str] = {}
_BODIES_KEPT = 64


def _body(spec: RunSpec, site: Site, user: tuple[int, int] | None) -> str:
    """Everything after the member's `run`, `command` and `envs`: the same for every member of an array, and for
    every run of the same `batch_key` beside it in the same runs folder (where the run folder is only "$run"), so
    it is made once for them."""
    key = (batch_key(spec), str(spec.run_dir.parent), user, site)
    found = _BODIES.get(key)
    if found is None:
        if len(_BODIES) >= _BODIES_KEPT:
            _BODIES.clear()
        found = _BODIES[key] = _make_body(spec, site, user)
    return found


def _make_body(spec: RunSpec, site: Site, user: tuple[int, int] | None) -> str:
    timeout_ms = max(1, round(spec.timeout_s * 1000))
    template = spec.model_copy(update={"command": _COMMAND, "env": {}})
    prelude = _contained(template, site, user, _Words(spec.run_dir))
    tail = min(TAIL_WINDOW_BYTES, spec.log_cap_bytes // 2)
    marker = LOG_CAP_MARKER.replace("{cap}", str(spec.log_cap_bytes)).replace("{dropped}", "%s")
    return f"""\
set -u
cd "$run" || exit 1
[ -n "${{SLURM_JOB_ID:-}}" ] && cp -f -- "$0" "$run/job.sh" 2>/dev/null  # the script, as Slurm keeps it
exec </dev/null
rm -f "$run/{END_FILE}"
now_ms() {{ date +%s%3N; }}
started=$(now_ms)
job=${{SLURM_ARRAY_JOB_ID:+${{SLURM_ARRAY_JOB_ID}}_${{SLURM_ARRAY_TASK_ID:-}}}}
printf '{{"job_id": "%s", "node": "%s", "started_at": %s.%s}}\\n' "${{job:-${{SLURM_JOB_ID:-}}}}" "$(hostname)" \\
    "${{started%???}}" "${{started: -3}}" >"$run/.{STARTED_FILE}" && mv -f "$run/.{STARTED_FILE}" "$run/{STARTED_FILE}"
if [ "${{SLURM_RESTART_COUNT:-0}}" -gt 0 ]; then
    exec >>"$run/log.txt" 2>&1
    echo "[research-mcp] requeued by Slurm (restart $SLURM_RESTART_COUNT): the run starts again"
else
    exec >"$run/log.txt" 2>&1
fi
finish() {{  # exit code, failure ("null" or a JSON string)
    local ended size dropped
    ended=$(now_ms)
    size=$(stat -c %s "$run/log.txt" 2>/dev/null || echo 0)
    if [ "$size" -gt {spec.log_cap_bytes} ]; then  # head, the marker, the tail from a line start
        head -c {spec.log_cap_bytes - tail} "$run/log.txt" >"$run/.log.tmp"
        tail -c {tail} "$run/log.txt" | tail -n +2 >"$run/.log.tail"
        dropped=$(( size - {spec.log_cap_bytes - tail} - $(stat -c %s "$run/.log.tail") ))
        printf {_q(marker)} "$dropped" >>"$run/.log.tmp"
        cat "$run/.log.tail" >>"$run/.log.tmp" && mv -f "$run/.log.tmp" "$run/log.txt"
        rm -f "$run/.log.tail"
    fi
    printf '{{"exit_code": %s, "failure": %s, "started_at": %s.%s, "ended_at": %s.%s, "timeout_s": %s}}\\n' \\
        "$1" "$2" "${{started%???}}" "${{started: -3}}" "${{ended%???}}" "${{ended: -3}}" {_seconds(spec.timeout_s)} \\
        >"$run/.{END_FILE}"
    mv -f "$run/.{END_FILE}" "$run/{END_FILE}"
}}
term=0
child=
on_term() {{ term=1; [ -n "$child" ] && kill -TERM "$child" 2>/dev/null; }}
trap on_term TERM INT
{prelude}
timeout --kill-after={_KILL_AFTER_S} {_seconds(spec.timeout_s)} "${{cmd[@]}}" &
child=$!
while :; do
    wait "$child"
    rc=$?
    kill -0 "$child" 2>/dev/null || break
done
elapsed=$(( $(now_ms) - started ))
if [ "$term" = 1 ]; then
    finish "$rc" '"cancelled"'
elif {{ [ "$rc" = 124 ] || [ "$rc" = 137 ]; }} && [ "$elapsed" -ge {timeout_ms} ]; then
    finish "$rc" '"timeout"'
else
    finish "$rc" null
fi
exit "$rc"
"""


def _contained(spec: RunSpec, site: Site, user: tuple[int, int] | None, words: _Words) -> str:
    """Shell lines that set `cmd`, a bash array: the command in its container, with the member's `envs`."""
    if spec.unsandboxed or site.container == "none":
        return _unsandboxed(spec, words)
    if site.container == "apptainer":
        return _apptainer(spec, site, words)
    if site.container == "pyxis":
        return _pyxis(spec, site, words)
    return _bwrap(spec, site, user, words)


_EACH_ENV = "for ((k = 0; k < ${#envs[@]}; k += 2)); do"


def _bwrap(spec: RunSpec, site: Site, user: tuple[int, int] | None, words: _Words) -> str:
    """The local backend's sandbox, with the job's GPUs (whatever Slurm gave it) and SLURM_* added at run time."""
    plain = spec.model_copy(update={"gpus": []})  # Slurm picks the GPUs; the job binds the ones it was given
    data = {"/etc/passwd": 3, "/etc/group": 4} if user is not None else {}
    sandbox = build_sandbox(plain, user, data)
    extra = [Bind(path, path, optional=True) for path in site.binds]
    if spec.network:
        extra += [Bind(path, path, optional=True) for path in ("/etc/resolv.conf", "/etc/hosts")]
    sandbox = dataclasses.replace(sandbox, binds=[*sandbox.binds, *extra], share_net=spec.network)
    argv = sandbox.argv()
    split = len(argv) - len(sandbox.command) - 1  # bwrap's `--` before the command: run-time options go before it
    lines = ["command -v bwrap >/dev/null || {",
             '    echo "[research-mcp] bubblewrap (bwrap) is not installed on node $(hostname): install it there, or '
             'set RESEARCH_MCP_SLURM_CONTAINER to apptainer or pyxis"',
             "    finish 127 '\"error\"'; exit 127; }"]  # fmt: skip
    if user is not None:
        uid, gid = user
        files = etc_identity_files(uid, gid)
        lines.append(f'chown -R -h -P {uid}:{gid} "$run/work" "$run/outputs"')
        lines.append(f"exec 3<<'RMCP_PASSWD'\n{files['/etc/passwd'].decode()}RMCP_PASSWD")
        lines.append(f"exec 4<<'RMCP_GROUP'\n{files['/etc/group'].decode()}RMCP_GROUP")
    lines.append(words.array("cmd", argv[:split]))
    lines.append("for v in $(compgen -e); do")
    lines.append(f'    case "$v" in {PASSED_VARS}) cmd+=(--setenv "$v" "${{!v}}") ;; esac')
    lines.append("done")
    lines.append('for d in /dev/nvidia* /dev/dri; do [ -e "$d" ] && cmd+=(--dev-bind "$d" "$d"); done')
    lines.append(f'{_EACH_ENV} cmd+=(--setenv "${{envs[k]}}" "${{envs[k+1]}}"); done')
    lines.append(words.array("cmd+", argv[split:]))
    return "\n".join(lines)


def _env_lines(env: dict[str, str], words: _Words, prefix: str = "") -> list[str]:
    return [f"export {prefix}{name}={words.word(value)}" for name, value in env.items()]


def _run_env(outputs: str) -> dict[str, str]:
    return {"PYTHONUNBUFFERED": "1", "RESEARCH_OUT": outputs}


def _cwd(spec: RunSpec, root: str) -> str:
    cwd = posixpath.normpath(posixpath.join(root, spec.workdir))
    if spec.workdir.startswith("/") or not (cwd == root or cwd.startswith(root + "/")):
        raise ValueError(f"workdir {spec.workdir!r} must be a folder inside the working tree")
    return cwd


def _mount_pairs(spec: RunSpec) -> list[tuple[str, str, bool]]:
    pairs = [(str(spec.run_dir / "work"), SANDBOX_WORK, True), (str(spec.run_dir / "outputs"), SANDBOX_OUTPUTS, True)]
    pairs += [(path, path, False) for path in spec.ro_paths]
    for mount in spec.mounts:
        if mount.volume:
            raise ValueError(f"{mount.source!r} is a docker volume, which only the docker backend can mount")
        pairs.append((mount.source, mount.dest, mount.writable))
    return pairs


def _image(spec: RunSpec, site: Site) -> str:
    image = spec.image or site.image
    if not image:
        raise ValueError(
            f"slurm_container={site.container} needs an image: set RESEARCH_MCP_SLURM_IMAGE "
            "(a .sif file for Apptainer, an image name or .sqsh for Pyxis) or give the run an image"
        )
    return image


def _apptainer(spec: RunSpec, site: Site, words: _Words) -> str:
    argv = ["apptainer", "exec", "--containall", "--cleanenv", "--no-home", "--pwd", _cwd(spec, SANDBOX_WORK)]
    for source, dest, writable in _mount_pairs(spec):
        argv += ["--bind", f"{source}:{dest}" + ("" if writable else ":ro")]
    argv += [arg for path in site.binds for arg in ("--bind", f"{path}:{path}:ro")]
    if not spec.network:
        argv += ["--net", "--network", "none"]
    if spec.gpus:
        argv.append("--nv")
    argv += [_image(spec, site), "/bin/sh", "-c", spec.command]
    passed = [
        "for v in $(compgen -e); do",
        f'    case "$v" in {PASSED_VARS}) export "APPTAINERENV_$v=${{!v}}" ;; esac',
        "done",
        f'{_EACH_ENV} export "APPTAINERENV_${{envs[k]}}=${{envs[k+1]}}"; done',
    ]
    return "\n".join([*_env_lines(_run_env(SANDBOX_OUTPUTS), words, "APPTAINERENV_"), *passed,
                      words.array("cmd", argv)])  # fmt: skip


def _pyxis(spec: RunSpec, site: Site, words: _Words) -> str:
    mounts = [f"{s}:{d}" + ("" if w else ":ro") for s, d, w in _mount_pairs(spec)]
    mounts += [f"{path}:{path}:ro" for path in site.binds]
    argv = [
        "srun", "--ntasks=1", f"--container-image={_image(spec, site)}", f"--container-mounts={','.join(mounts)}",
        f"--container-workdir={_cwd(spec, SANDBOX_WORK)}", "--no-container-mount-home",
        "/bin/sh", "-c", spec.command,
    ]  # fmt: skip
    note = "echo '[research-mcp] Pyxis containers share the node network (slurm_container=pyxis)'"
    return "\n".join([*_env_lines(_run_env(SANDBOX_OUTPUTS), words), *([note] if not spec.network else []),
                      f'{_EACH_ENV} export "${{envs[k]}}=${{envs[k+1]}}"; done', words.array("cmd", argv)])  # fmt: skip


def _unsandboxed(spec: RunSpec, words: _Words) -> str:
    work = str(spec.run_dir / "work")
    cwd = _cwd(spec, work)
    scratch = str(spec.run_dir / "tmp")
    env = {"HOME": scratch, "TMPDIR": scratch, **_run_env(str(spec.run_dir / "outputs"))}
    notice = (
        "echo '[research-mcp] this run is NOT sandboxed (RESEARCH_MCP_ALLOW_UNSANDBOXED=1 or slurm_container=none): "
        "it sees the node's files and network'"
    )
    lines = [notice, f"mkdir -p {words.word(scratch)}", *_env_lines(env, words)]
    lines.append(f'{_EACH_ENV} export "${{envs[k]}}=${{envs[k+1]}}"; done')
    lines += [f"cd {words.word(cwd)} || exit 1", words.array("cmd", ["/bin/sh", "-c", spec.command])]
    return "\n".join(lines)

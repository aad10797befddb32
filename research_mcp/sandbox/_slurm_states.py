"""What Slurm says about a job, read and put in words: `squeue`, `scontrol show job -o` and `sacct` lines parsed,
job states mapped to a run's status, pending reasons said as what the run waits for. Pure functions."""

from __future__ import annotations

import re
from dataclasses import dataclass

from research_mcp.sandbox._layout import ended_detail
from research_mcp.sandbox.base import Failure, RunStatus

__all__ = [
    "ACTIVE_STATES",
    "JobEnd",
    "JobInfo",
    "ended_status",
    "parse_gres",
    "parse_scontrol",
    "parse_squeue",
    "pending_words",
    "status_of",
]

ACTIVE_STATES = frozenset(
    {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED",
     "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED", "RESV_DEL_HOLD"}
)  # fmt: skip
SQUEUE_FORMAT = "%i|%T|%r|%j"


@dataclass(frozen=True, slots=True)
class JobInfo:
    """One job (or array task) as Slurm reports it."""

    job_id: str
    state: str
    reason: str = ""
    name: str = ""
    exit_code: int | None = None
    signal: int | None = None
    restarts: int = 0
    requeue: bool = False


@dataclass(frozen=True, slots=True)
class JobEnd:
    """The job's own record of its end (`end.json`), written in the run folder by its script."""

    exit_code: int | None
    """None: the command never ran (cancelled while pending)."""
    failure: Failure | None
    started_at: float
    ended_at: float
    timeout_s: float | None = None


def parse_squeue(text: str) -> dict[str, JobInfo]:
    """`squeue -h -r -t all -o '%i|%T|%r|%j'`: job (or `array_task`) id -> what Slurm says."""
    found: dict[str, JobInfo] = {}
    for line in text.splitlines():
        parts = line.strip().split("|", 3)
        if len(parts) == 4 and parts[0]:
            job_id, state, reason, name = parts
            found[job_id] = JobInfo(job_id, _base_state(state), "" if reason == "None" else reason, name)
    return found


def parse_scontrol(text: str) -> JobInfo | None:
    """`scontrol show job -o <id>` (one line of key=value pairs); None when Slurm does not know the job."""
    fields = dict(re.findall(r"(\w+)=(\S*)", text))
    if "JobState" not in fields:
        return None
    job_id = fields.get("JobId", "")
    if fields.get("ArrayTaskId") and fields.get("ArrayJobId"):
        job_id = f"{fields['ArrayJobId']}_{fields['ArrayTaskId']}"
    code, signal = None, None
    if match := re.fullmatch(r"(\d+):(\d+)", fields.get("ExitCode", "")):
        code, signal = int(match.group(1)), int(match.group(2))
    reason = fields.get("Reason", "")
    return JobInfo(
        job_id=job_id,
        state=_base_state(fields["JobState"]),
        reason="" if reason in ("None", "(null)") else reason,
        name=fields.get("JobName", ""),
        exit_code=code,
        signal=signal,
        restarts=int(fields.get("Restarts", "0") or 0),
        requeue=fields.get("Requeue") == "1",
    )


def parse_sacct(text: str, job_id: str) -> JobInfo | None:
    """`sacct -X -n -P -j <id> -o JobID,State,ExitCode,JobName`: the line of this job, if any."""
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) >= 3 and parts[0] == job_id:
            code, _, signal = parts[2].partition(":")
            return JobInfo(
                job_id,
                _base_state(parts[1]),
                name=parts[3] if len(parts) > 3 else "",
                exit_code=int(code) if code.isdigit() else None,
                signal=int(signal) if signal.isdigit() else None,
            )
    return None


def _base_state(state: str) -> str:
    """`CANCELLED by 0` -> CANCELLED; `COMPLETING+` flags dropped."""
    return state.split()[0].rstrip("+").upper() if state.strip() else "UNKNOWN"


_REASONS = {
    "Priority": "waiting behind jobs of higher priority",
    "Dependency": "waiting for the jobs it depends on",
    "DependencyNeverSatisfied": "its dependency can never be met: cancel it",
    "BeginTime": "waiting for its start time",
    "JobHeldUser": "held by its user (scontrol release <id>)",
    "JobHeldAdmin": "held by an administrator",
    "ReqNodeNotAvail": "the nodes it needs are down, drained or reserved",
    "PartitionDown": "its partition is down",
    "PartitionInactive": "its partition is inactive",
    "PartitionTimeLimit": "its time limit is over the partition's: ask a shorter timeout_s",
    "PartitionNodeLimit": "it asks for more nodes than the partition allows",
    "PartitionConfig": "it asks for more than the partition allows (CPUs, memory or GPUs)",
    "Reservation": "waiting for its reservation",
    "BadConstraints": "no node has what it asks for",
    "JobArrayTaskLimit": "held back by its array's throttle (slurm_array_throttle)",
    "NodeDown": "a node it needs is down",
    "launch failed requeued held": "its launch failed and Slurm held it (scontrol release <id>)",
    "Licenses": "waiting for licenses",
    "InvalidAccount": "its account is not valid: check slurm_account",
    "InvalidQOS": "its QOS is not valid: check slurm_qos",
}


def pending_words(reason: str, gpus: bool) -> str:
    """What a pending job waits for, in words, then Slurm's own reason: "waiting for GPUs: Resources"."""
    if not reason:
        words = "not yet looked at by the scheduler"
    elif reason == "Resources":
        words = "waiting for GPUs" if gpus else "waiting for free CPUs and memory"
    elif reason.startswith(("QOS", "Assoc")) and ("Max" in reason or "Grp" in reason or "Limit" in reason):
        words = "over your group's limit"
    else:
        words = _REASONS.get(reason, "pending")
    return f"{words}: {reason}" if reason else words


def status_of(info: JobInfo, end: JobEnd | None, gpus: bool, started_at: float | None) -> RunStatus:
    """A run's status from what Slurm says of its job and what the job wrote of its end (either may lead)."""
    state = info.state
    if state == "PENDING":
        detail = f"Pending in Slurm's queue: {pending_words(info.reason, gpus)}."
        if info.restarts:
            detail = f"Requeued by Slurm (restart {info.restarts}, after preemption or a node failure). " + detail
        return RunStatus(state="running", detail=detail)
    if state in ("REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED"):
        return RunStatus(state="running", detail="Requeued by Slurm (preempted or its node failed); it runs again.")
    if state in ACTIVE_STATES:
        if end is not None and state == "COMPLETING":
            return ended_status(end)
        detail = "Suspended by Slurm." if state in ("SUSPENDED", "STOPPED") else None
        return RunStatus(state="running", started_at=started_at, detail=detail)
    return _terminal(info, end, started_at)


def _terminal(info: JobInfo, end: JobEnd | None, started_at: float | None) -> RunStatus:
    state = info.state
    failure: Failure | None
    if state == "OUT_OF_MEMORY":
        failure = "oom"
        detail = ended_detail("oom", end.exit_code if end else info.exit_code, _took(end)) + " (Slurm: OUT_OF_MEMORY)"
    elif state == "TIMEOUT" and (end is None or end.failure != "timeout"):
        failure, detail = "timeout", "Killed at Slurm's time limit (--time) before its own timeout_s."
    elif state == "CANCELLED":
        failure, detail = "cancelled", ended_detail("cancelled", None, _took(end)) + f" (Slurm: {state})"
    elif state in ("NODE_FAIL", "BOOT_FAIL"):
        failure, detail = "error", f"Its node failed (Slurm: {state}); run it again."
    elif state == "PREEMPTED":
        failure, detail = "error", "Preempted by a job of higher priority and not requeued (Slurm: PREEMPTED)."
    elif state == "DEADLINE":
        failure, detail = "error", "Slurm ended it at its deadline (Slurm: DEADLINE)."
    elif end is not None:
        return ended_status(end)
    elif state == "COMPLETED":
        return RunStatus(state="exited", exit_code=0, started_at=started_at, detail=ended_detail(None, 0, None))
    else:  # FAILED (or a state this version does not know) without the job's own end: its script failed early
        code = info.exit_code if info.exit_code else 1
        detail = (
            f"The job ended {state} with exit code {code} before its command finished; see slurm-<job>.out in the "
            "run folder."
        )
        return RunStatus(state="exited", exit_code=code, failure="error", started_at=started_at, detail=detail)
    return RunStatus(
        state="exited",
        exit_code=end.exit_code if end else info.exit_code,
        failure=failure,
        started_at=end.started_at if end else started_at,
        ended_at=end.ended_at if end else None,
        detail=detail,
    )


def _took(end: JobEnd | None) -> float | None:
    return None if end is None else end.ended_at - end.started_at


def ended_status(end: JobEnd) -> RunStatus:
    """A run's status from the job's own end alone (Slurm forgot the job, or it agrees)."""
    took = end.ended_at - end.started_at
    failure = end.failure
    if failure == "cancelled" and end.exit_code is None:
        detail = "Cancelled while it waited in Slurm's queue: it never ran."
    elif failure == "cancelled":
        detail = (
            f"Ended by a signal from Slurm after {took:.1f} s (scancel, preemption or its time limit); every process "
            "of the run was killed."
        )
    elif failure is None and end.exit_code:
        failure = "error"
        detail = ended_detail(failure, end.exit_code, took)
    else:
        detail = ended_detail(failure, end.exit_code, took, timeout_s=end.timeout_s)
    return RunStatus(
        state="exited",
        exit_code=end.exit_code,
        failure=failure,
        started_at=end.started_at,
        ended_at=end.ended_at,
        detail=detail,
    )


def parse_gres(gres: str) -> dict[str, int]:
    """GPUs per type in a node's `%G` (`gpu:a100:4(S:0-1),gpu:v100:2` -> {"a100": 4, "v100": 2}; untyped: "gpu")."""
    found: dict[str, int] = {}
    for item in re.split(r",(?![^()]*\))", gres):
        item = re.sub(r"\(.*\)$", "", item.strip())
        parts = item.split(":")
        if parts[0] != "gpu" or len(parts) < 2:
            continue
        count = parts[-1]
        if not count.isdigit():
            continue
        kind = parts[1] if len(parts) > 2 else "gpu"
        found[kind] = found.get(kind, 0) + int(count)
    return found

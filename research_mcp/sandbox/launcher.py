"""The launcher: the one process per server that forks local runs' supervisors (`supervisor.py`).

`python -P -m research_mcp.sandbox.launcher --parent <server pid>` runs `serve`. It keeps one spare
supervisor forked ahead (`Spare`): detached, with the run's cgroup made and the run's first process already in
it, so a run's start does not wait for a fork, a cgroup and the move into it. Each request takes the spare, and
the next one is made while the run starts. A spare that is never used removes its cgroup when the launcher
exits, and the launcher reaps it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any, cast

from research_mcp.sandbox._starter import Prepared, close_fds_but, read_all
from research_mcp.sandbox.bwrap import NOBODY
from research_mcp.sandbox.cgroups import detect, sweep_stale
from research_mcp.sandbox.supervisor import become_subreaper, detach, reap, supervise_one

__all__ = ["Spare", "main", "serve", "wait_for_run"]

_REAP_EVERY_S = 0.5


def serve(parent: int) -> int:
    """The launcher's loop: requests on stdin, answers on stdout; reaps its supervisors as they end.

    It keeps one spare supervisor made ahead (see `Spare`), so a run's start does not wait for a fork, a cgroup
    and the move into it; each request takes the spare, and the next one is made while the run starts."""
    buffered = b""
    spare: Spare | None = None
    sweep_stale(detect())  # what supervisors killed from outside left
    try:
        while True:
            reap()
            if os.getppid() != parent:
                return 0  # the server is gone (its stdin pipe may be held by a stray fork): running runs go on
            if spare is None:
                with contextlib.suppress(OSError):  # no fork now (a pids limit?): the next request says why
                    spare = Spare()
            readable, _, _ = select.select([0], [], [], _REAP_EVERY_S)
            if not readable:
                continue
            chunk = os.read(0, 1 << 16)
            if not chunk:
                return 0
            buffered += chunk
            *lines, buffered = buffered.split(b"\n")
            for line in lines:
                if not line.strip():
                    continue
                request = _request(line)
                if isinstance(request, str):
                    answer: dict[str, Any] = {"error": request}
                else:
                    taken, spare = spare, None
                    answer = _start_run(request, taken)
                os.write(1, json.dumps(answer).encode() + b"\n")
    finally:
        if spare is not None:
            spare.close(wait_s=2.0)  # reaped here: the launcher's orphans would be PID 1's zombies


def _request(line: bytes) -> dict[str, Any] | str:
    """A request line checked, or why it is refused."""
    try:
        found: object = json.loads(line)
        if not isinstance(found, dict):
            raise ValueError("not a JSON object")
        asked = cast(dict[str, Any], found)
        return {
            "run_dir": str(asked["run_dir"]),
            "uid": int(asked.get("uid", NOBODY)),
            "gid": int(asked.get("gid", NOBODY)),
        }
    except (ValueError, KeyError, TypeError) as exc:
        return f"bad request {line[:200]!r}: {exc}"


def _start_run(request: dict[str, Any], spare: Spare | None) -> dict[str, Any]:
    """Hand the request to the spare (or to a supervisor forked now); the answer for the server."""
    try:
        answer = (spare or Spare()).hand_over(request)
        if answer is None:  # the spare had died (killed from outside): a fresh one takes the run
            answer = Spare().hand_over(request)
    except OSError as exc:
        return {"error": f"could not start a supervisor for {request['run_dir']}: {exc}"}
    return answer or {"error": f"no supervisor could take {request['run_dir']}"}


class Spare:
    """A supervisor forked before its run is asked for (the launcher's side of it): it has detached, made the
    run's cgroup and its first process in it, and waits for one request on `request_w`; it answers on `ready_r`
    (then EOF). Closing `request_w` unasked makes it clean up and exit."""

    def __init__(self) -> None:
        request_r, self.request_w = os.pipe()
        self.ready_r, ready_w = os.pipe()
        try:
            self.pid = os.fork()
        except OSError:
            for fd in (request_r, self.request_w, self.ready_r, ready_w):
                os.close(fd)
            raise
        if self.pid == 0:  # the supervisor: never returns into the launcher's loop
            code = 1
            try:
                detach()
                close_fds_but((request_r, ready_w))
                code = wait_for_run(request_r, ready_w)
            finally:
                os._exit(code)
        os.close(request_r)
        os.close(ready_w)

    def hand_over(self, request: dict[str, Any]) -> dict[str, Any] | None:
        """Give it the run; its answer once the run started (or its supervisor ended first). None when it had
        died before it could take the request (then it took nothing)."""
        try:
            try:
                os.write(self.request_w, json.dumps(request).encode())
            except BrokenPipeError:
                return None
            os.close(self.request_w)
            self.request_w = -1
            answer = read_all(self.ready_r)  # EOF once the supervisor reported or exited
        finally:
            self.close()
        text = answer.decode(errors="replace").strip()
        ready: object = json.loads(text) if text.startswith("{") else None
        return {"run_dir": request["run_dir"], "pid": self.pid, "ready": ready}

    def close(self, wait_s: float = 0.0) -> None:
        """Let it go (unused, it sees EOF, removes its cgroup and exits); reap it if it ends within `wait_s`."""
        for fd in (self.request_w, self.ready_r):
            if fd >= 0:
                os.close(fd)
        self.request_w = self.ready_r = -1
        deadline = time.monotonic() + wait_s
        with contextlib.suppress(ChildProcessError):
            while not os.waitpid(self.pid, os.WNOHANG)[0] and time.monotonic() < deadline:
                time.sleep(0.005)


def wait_for_run(request_r: int, ready_w: int) -> int:
    """The spare supervisor: prepare, wait for the request (EOF: clean up), then supervise that run."""

    def leave(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, leave)
    become_subreaper()
    prepared = Prepared.make()
    try:
        asked = read_all(request_r)  # the launcher writes one request and closes
    except BaseException:
        prepared.discard()
        raise
    os.close(request_r)
    if not asked:
        prepared.discard()
        return 0
    request = json.loads(asked)
    run_dir = Path(str(request["run_dir"])).resolve()
    return supervise_one(run_dir, int(request["uid"]), int(request["gid"]), ready_w, prepared)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m research_mcp.sandbox.launcher")
    parser.add_argument("--parent", type=int, help="exit once this process is no longer our parent")
    args = parser.parse_args(argv)
    return serve(args.parent if args.parent is not None else os.getppid())


if __name__ == "__main__":
    sys.exit(main())

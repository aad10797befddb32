"""Python environments for runs: which folders a named or workspace environment binds, and what is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from research_mcp.errors import BadInputError
from research_mcp.sandbox._supervised import Spec, build_sandbox
from research_mcp.sandbox.base import RunSpec
from research_mcp.sandbox.docker import create_kwargs
from research_mcp.sandbox.pyenv import PythonEnv, resolve_python_env
from research_mcp.workspace import Workspace


def _venv(folder: Path, home: str | None) -> Path:
    (folder / "bin").mkdir(parents=True)
    (folder / "bin" / "python").write_text("")
    if home is not None:
        (folder / "pyvenv.cfg").write_text(f"home = {home}\ninclude-system-site-packages = false\n")
    return folder


def test_a_workspace_venv_made_from_the_system_python_binds_only_itself(tmp_path: Path) -> None:
    venv = _venv(tmp_path / ".venv", "/usr/bin")
    found = resolve_python_env(Workspace(tmp_path.resolve(), "setting"), ".venv", {})
    assert found.ro_paths == [str(venv)]
    assert found.env()["PATH"].startswith(f"{venv}/bin:") and found.env()["VIRTUAL_ENV"] == str(venv)


def test_a_venv_from_an_interpreter_outside_usr_also_binds_that_interpreter(tmp_path: Path) -> None:
    base = tmp_path / "pythons" / "3.11.7"
    (base / "bin").mkdir(parents=True)
    _venv(tmp_path / "ws" / "env", str(base / "bin"))
    found = resolve_python_env(Workspace((tmp_path / "ws").resolve(), "setting"), "env", {})
    assert found.ro_paths == [str(tmp_path / "ws" / "env"), str(base)]


def test_a_conda_env_without_pyvenv_cfg_is_self_contained(tmp_path: Path) -> None:
    env = _venv(tmp_path / "envs" / "torch", None)
    found = resolve_python_env(Workspace((tmp_path / "ws").resolve(), "setting"), "torch", {"torch": env})
    assert (found.name, found.ro_paths) == ("torch", [str(env)])


@pytest.mark.parametrize(
    ("wanted", "says"),
    [
        ("missing", "neither a workspace folder nor a named environment (named: gpu)"),
        ("../outside", "neither a workspace folder"),
        ("/usr", "neither a workspace folder"),
        ("plain", "has no bin/python"),
    ],
)
def test_what_is_not_a_reachable_environment_is_refused_by_name(tmp_path: Path, wanted: str, says: str) -> None:
    ws = tmp_path / "ws"
    (ws / "plain").mkdir(parents=True)
    _venv(tmp_path / "outside", "/usr/bin")
    with pytest.raises(BadInputError, match=says.replace("(", r"\(").replace(")", r"\)")):
        resolve_python_env(Workspace(ws.resolve(), "setting"), wanted, {"gpu": tmp_path / "nowhere"})


def _spec(tmp_path: Path, env: PythonEnv) -> RunSpec:
    return RunSpec(
        run_id="r1", run_dir=tmp_path / "runs" / "r1", command="python -V", timeout_s=5, ro_paths=env.ro_paths,
        env=env.env(),
    )  # fmt: skip


def test_both_backends_bind_the_environment_read_only_at_its_own_path(tmp_path: Path) -> None:
    env = PythonEnv(name="e", root=str(tmp_path / "e"), ro_paths=[str(tmp_path / "e"), "/opt/py"])
    spec = _spec(tmp_path, env)
    volumes = create_kwargs(spec, image="img", user=(65534, 65534))["volumes"]
    assert volumes[str(tmp_path / "e")] == {"bind": str(tmp_path / "e"), "mode": "ro"}
    assert volumes["/opt/py"] == {"bind": "/opt/py", "mode": "ro"}
    argv = build_sandbox(Spec.from_json(spec.model_dump_json()), None).argv()
    joined = " ".join(argv)
    assert f"--ro-bind {tmp_path / 'e'} {tmp_path / 'e'}" in joined and "--ro-bind /opt/py /opt/py" in joined
    assert f"--setenv PATH {tmp_path / 'e'}/bin:" in joined


def test_the_supervisor_refuses_relative_read_only_paths(tmp_path: Path) -> None:
    data = json.loads(_spec(tmp_path, PythonEnv(name="e", root="/e", ro_paths=["/e"])).model_dump_json())
    data["ro_paths"] = ["relative/env"]
    with pytest.raises(ValueError, match="ro_paths must be absolute"):
        Spec.from_json(json.dumps(data))

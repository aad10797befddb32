"""The supervisor reads spec.json without pydantic: it must agree with RunSpec field for field."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from research_mcp.sandbox import _layout, base
from research_mcp.sandbox.base import Mount, RunSpec
from research_mcp.sandbox.bwrap import SYSTEM_BINDS
from research_mcp.sandbox.supervisor import Spec, build_sandbox


def test_a_run_spec_dumped_by_the_server_is_read_back_field_for_field(tmp_path: Path) -> None:
    spec = RunSpec(
        run_id="r1", run_dir=tmp_path, command="python3 x.py", workdir="sub", env={"SEED": "1"}, gpus=[0, 2],
        cpus=1.5, memory_bytes=1 << 30, pids=64, timeout_s=12.5, network=False, log_cap_bytes=1 << 20,
    )  # fmt: skip
    read = Spec.from_json(spec.model_dump_json())
    for name in ("run_id", "run_dir", "command", "workdir", "env", "gpus", "cpus", "memory_bytes", "pids",
                 "timeout_s", "network", "log_cap_bytes"):  # fmt: skip
        assert getattr(read, name) == getattr(spec, name), name
    assert set(RunSpec.model_fields) - {"image", "own_network"} == set(Spec.__dataclass_fields__)  # docker reads those


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("[]", "not a JSON object"),
        ('{"run_id": "r", "run_dir": "/x", "command": "c", "timeout_s": "soon"}', "timeout_s"),
        ('{"run_id": "r", "run_dir": "/x", "command": "c", "timeout_s": 1, "env": {"A": 1}}', "env"),
        ('{"run_id": "r", "run_dir": "/x", "command": "c", "timeout_s": 1, "gpus": [true]}', "gpus"),
    ],
)
def test_a_bad_spec_is_refused_naming_the_field(text: str, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        Spec.from_json(text)


def test_the_layout_constants_are_the_ones_base_exports() -> None:
    assert (base.SANDBOX_WORK, base.SANDBOX_OUTPUTS, base.LOG_CAP_MARKER) == (
        _layout.SANDBOX_WORK,
        _layout.SANDBOX_OUTPUTS,
        _layout.LOG_CAP_MARKER,
    )


def test_the_supervisor_loads_without_pydantic() -> None:
    """It is forked per run; pydantic alone would cost more than a short run (see evals/bench --sandbox)."""
    code = "import sys, research_mcp.sandbox.launcher; print('pydantic' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "False"


def test_mounts_survive_spec_json_and_bind_read_only_unless_writable(tmp_path: Path) -> None:
    data, cache = tmp_path / "datasets", tmp_path / "cache"
    data.mkdir()
    cache.mkdir()
    mounts = [Mount(source=str(data), dest="/data"), Mount(source=str(cache), dest=str(cache), writable=True)]
    run = RunSpec(run_id="r1", run_dir=tmp_path, command="true", timeout_s=5, mounts=mounts)
    argv = build_sandbox(Spec.from_json(run.model_dump_json()), None).argv()
    triples = {(argv[i], argv[i + 1], argv[i + 2]) for i in range(len(argv) - 2)}
    assert ("--ro-bind", str(data), "/data") in triples
    assert ("--bind", str(cache), str(cache)) in triples
    volume = RunSpec(run_id="r2", run_dir=tmp_path, command="true", timeout_s=5, mounts=[
        Mount(source="research-env-abc", dest="/opt/env", volume=True)
    ])  # fmt: skip
    with pytest.raises(ValueError, match="docker volume"):
        build_sandbox(Spec.from_json(volume.model_dump_json()), None)
    with pytest.raises(ValueError, match="not absolute"):
        Spec.from_json(run.model_dump_json().replace('"dest":"/data"', '"dest":"data"'))


def test_fontconfig_is_among_the_system_files_every_sandbox_reads() -> None:
    assert any(bind.source == "/etc/fonts" and not bind.writable for bind in SYSTEM_BINDS)


def test_a_run_with_gpus_binds_just_their_device_nodes_and_names_them_to_cuda(tmp_path: Path) -> None:
    spec = Spec(run_id="r1", run_dir=tmp_path, command="python3 train.py", timeout_s=60, gpus=[0, 2])
    argv = build_sandbox(spec, None).argv()
    devices = [(argv[i], argv[i + 1]) for i, item in enumerate(argv) if item.startswith("--dev-bind")]
    assert [argv[i] for i, item in enumerate(argv) if item.startswith("--dev-bind")] == [
        "--dev-bind", "--dev-bind-try", "--dev-bind", "--dev-bind"
    ]  # fmt: skip
    assert [source for _, source in devices] == ["/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia0", "/dev/nvidia2"]
    env = {argv[i + 1]: argv[i + 2] for i, item in enumerate(argv) if item == "--setenv"}
    assert env["CUDA_VISIBLE_DEVICES"] == "0,2"
    plain = build_sandbox(Spec(run_id="r2", run_dir=tmp_path, command="true", timeout_s=1), None).argv()
    assert not any(item.startswith("--dev-bind") for item in plain) and "CUDA_VISIBLE_DEVICES" not in plain

"""Datasets at /data, prepare_data, earlier runs as inputs and rerun, through the real MCP tools on each real
backend: a small repository reads a dataset downloaded from a local HTTP server and writes metrics."""

from __future__ import annotations

import hashlib
import http.server
import json
import socket
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from research_mcp.config import Settings
from research_mcp.sandbox.datasets import hash_entries
from research_mcp.server import build_server
from tests.conftest import open_for_sandbox, skip_or_fail
from tests.integration._client import call, call_raw, error_text
from tests.integration.test_sandbox_tools import AI_SCIENTIST_EXPERIMENT, BACKENDS, Backend, finish

pytestmark = pytest.mark.anyio

ROWS = "x,y\n" + "".join(f"{i},{2 * i + 1}\n" for i in range(50))
TRAIN = """\
import argparse, csv, json, os, random
parser = argparse.ArgumentParser()
parser.add_argument("--seed", type=int, default=int(os.environ.get("RESEARCH_SEED", "0")))
args = parser.parse_args()
rows = list(csv.DictReader(open("/data/toy/points.csv")))
rng = random.Random(args.seed)
w, b = rng.uniform(-1, 1), rng.uniform(-1, 1)
for step in range(200):
    x, y = (float(v) for v in rng.choice(rows).values())
    err = w * x / 50 + b - y / 100
    w, b = w - 0.1 * err * x / 50, b - 0.1 * err
loss = sum((w * float(r["x"]) / 50 + b - float(r["y"]) / 100) ** 2 for r in rows) / len(rows)
out = os.path.join(os.environ["RESEARCH_OUT"], "final_info.json")
json.dump({"toy": {"means": {"loss": loss, "w": w}}}, open(out, "w"))
print("seed", args.seed, "loss", loss)
"""
DOWNLOAD = (
    'python3 -c "import os, urllib.request; '
    "urllib.request.urlretrieve('{url}', os.path.join(os.environ['RESEARCH_DATA'], 'points.csv'))\""
)


def host_address() -> str:
    """An address of this host that is not loopback. The local sandbox's network (slirp4netns, started with
    --disable-host-loopback) cannot reach the host's 127.0.0.1, and Docker's bridge reaches only host services
    bound beyond it; so the test serves its file on 0.0.0.0 and the run fetches it from this address."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.123", 9))  # no packet is sent: this only picks the outgoing interface
            address = str(probe.getsockname()[0])
        except OSError:
            address = "127.0.0.1"
    if address.startswith("127."):
        skip_or_fail("this host has no address beyond loopback for the sandbox's network to reach")
    return address


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    """The dataset file, served over HTTP by this test; yields its URL."""
    folder = tmp_path / "served"
    folder.mkdir()
    (folder / "points.csv").write_text(ROWS)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(folder), **kwargs)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("0.0.0.0", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{host_address()}:{server.server_address[1]}/points.csv"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "repo").mkdir(parents=True)
    (root / "repo" / "train.py").write_text(TRAIN)
    open_for_sandbox(tmp_path, root)
    return root


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Backend:
    found: Backend = request.param
    return found


@pytest.fixture
async def lab(workspace: Path, backend: Backend) -> AsyncIterator[Client]:
    settings = Settings(workspace=workspace, backend=backend, max_concurrent_runs=4, docker_allow_network=True)
    async with Client(build_server(settings), raise_exceptions=True) as client:
        yield client


async def metrics_of(client: Client, run_id: str) -> dict[str, float]:
    found = await call(client, "read_metrics", {"source": run_id})
    return {m["name"]: m["last"] for m in found["metrics"]}


async def prepared_toy(lab: Client, url: str) -> dict[str, Any]:
    started = await call(lab, "prepare_data", {"name": "toy", "command": DOWNLOAD.format(url=url), "wait_s": 30})
    done = await finish(lab, started["run"]["id"])
    assert done["run"]["state"] == "succeeded", done
    return done


async def test_a_dataset_is_downloaded_read_by_a_training_run_and_its_hash_recorded(
    lab: Client, workspace: Path, served: str, backend: Backend
) -> None:
    done = await prepared_toy(lab, served)
    assert done["run"]["kind"] == "data" and done["run"]["config"] == {"dataset": "toy"}
    assert done["run"]["backend"] == backend
    assert (workspace / "datasets" / "toy" / "points.csv").read_text() == ROWS
    assert not list((workspace / "datasets" / ".incoming").iterdir())  # nothing half-made is left
    expected = hash_entries({"points.csv": (len(ROWS), hashlib.sha256(ROWS.encode()).hexdigest())})
    assert done["run"]["datasets"] == {"toy": expected[:12]}
    assert expected[:12] in done["run"]["detail"]
    step = done["next_step"]
    assert (step["tool"], step["arguments"]) == ("list_files", {"path": "datasets/toy"})
    listed = await call(lab, step["tool"], step["arguments"])
    assert "points.csv" in json.dumps(listed)

    trained = await call(lab, "run_experiment", {"command": "python3 train.py --seed 3", "workdir": "repo",
                                                 "seed": 3, "wait_s": 30})  # fmt: skip
    trained = await finish(lab, trained["run"]["id"])
    assert trained["run"]["state"] == "succeeded" and trained["run"]["backend"] == backend, trained["log_tail"]
    assert trained["run"]["datasets"] == {"toy": expected[:12]}
    metrics = await metrics_of(lab, trained["run"]["id"])
    assert metrics["toy.means.loss"] < 1.0 and "seed 3" in " ".join(trained["log_tail"])
    assert not (workspace / trained["run"]["folder"] / "code" / "datasets").exists()  # data is never snapshotted


async def test_writing_into_data_fails_and_leaves_the_dataset_as_it_was(lab: Client, workspace: Path) -> None:
    (workspace / "datasets" / "toy").mkdir(parents=True)
    (workspace / "datasets" / "toy" / "points.csv").write_text(ROWS)
    open_for_sandbox(workspace.parent, workspace / "datasets" / "toy")
    script = (
        "import os\nprint(open('/data/toy/points.csv').read().count('\\n'))\n"
        "for path in ('/data/toy/points.csv', '/data/toy/new.txt', '/data/new.txt'):\n"
        "    try:\n        open(path, 'a').write('x')\n        print('WROTE', path)\n"
        "    except OSError as exc:\n        print('refused', path, exc.strerror)\n"
    )
    started = await call(lab, "run_experiment", {"command": "python3 w.py", "workdir": None,
                                                 "files": {"w.py": script}, "wait_s": 30})  # fmt: skip
    done = await finish(lab, started["run"]["id"])
    assert done["run"]["state"] == "succeeded", done["log_tail"]
    assert "51" in done["log_tail"]
    assert not [line for line in done["log_tail"] if "WROTE" in line]
    assert len([line for line in done["log_tail"] if line.startswith("refused")]) == 3
    assert sorted(p.name for p in (workspace / "datasets" / "toy").iterdir()) == ["points.csv"]
    assert (workspace / "datasets" / "toy" / "points.csv").read_text() == ROWS


async def test_rerun_reproduces_a_seeded_run_and_refuses_when_its_dataset_changed(
    lab: Client, workspace: Path, served: str
) -> None:
    await prepared_toy(lab, served)
    first = await call(lab, "run_experiment", {"command": "python3 train.py", "workdir": "repo", "seed": 5,
                                               "env": {"RESEARCH_SEED": "5"}, "wait_s": 30})  # fmt: skip
    first = await finish(lab, first["run"]["id"])
    (workspace / "repo" / "train.py").write_text("raise SystemExit('the workspace changed since')\n")
    again = await call(lab, "rerun", {"run_id": first["run"]["id"], "wait_s": 30})
    again = await finish(lab, again["run"]["id"])
    assert again["run"]["state"] == "succeeded", again["log_tail"]  # its own snapshot, not the workspace now
    assert again["run"]["parent"] == first["run"]["id"] and again["run"]["seed"] == 5
    assert again["run"]["code_hash"] == first["run"]["code_hash"]
    assert again["run"]["datasets"] == first["run"]["datasets"]
    assert await metrics_of(lab, again["run"]["id"]) == await metrics_of(lab, first["run"]["id"])
    other = await finish(lab, (await call(lab, "rerun", {"run_id": first["run"]["id"], "seed": 6}))["run"]["id"])
    assert other["run"]["seed"] == 6 and "seed 6" in " ".join(other["log_tail"])
    assert await metrics_of(lab, other["run"]["id"]) != await metrics_of(lab, first["run"]["id"])

    with (workspace / "datasets" / "toy" / "points.csv").open("a") as fh:
        fh.write("50,101\n")
    refused = error_text(await call_raw(lab, "rerun", {"run_id": first["run"]["id"]}))
    assert "/data/toy: changed points.csv" in refused and "changed_data_ok" in refused
    assert (await call(lab, "list_runs", {"parent": first["run"]["id"]}))["total"] == 2  # nothing was queued
    anyway = await call(lab, "rerun", {"run_id": first["run"]["id"], "changed_data_ok": True})
    anyway = await finish(lab, anyway["run"]["id"])
    assert anyway["run"]["state"] == "succeeded"
    assert anyway["run"]["datasets"]["toy"] != first["run"]["datasets"]["toy"]


async def test_earlier_runs_are_inputs_of_a_plot_script_read_only_and_in_its_code_hash(
    lab: Client, workspace: Path
) -> None:
    template = workspace / "templates" / "nanoGPT"
    template.mkdir(parents=True)
    (template / "experiment.py").write_text(AI_SCIENTIST_EXPERIMENT)
    ids = []
    for n in (0, 1):
        started = await call(lab, "run_experiment", {"command": f"python3 experiment.py --out_dir run_{n}",
                                                     "workdir": "templates/nanoGPT", "wait_s": 30})  # fmt: skip
        ids.append((await finish(lab, started["run"]["id"]))["run"]["id"])
    plot = (
        "import json, os\n"
        "found = {d: json.load(open(os.path.join(d, 'final_info.json'))) for d in ('run_0', 'run_1')}\n"
        "json.dump({d: v['shakespeare_char']['means']['best_val_loss_mean'] for d, v in found.items()},\n"
        "          open(os.path.join(os.environ['RESEARCH_OUT'], 'summary.json'), 'w'))\n"
        "try:\n    open('run_0/final_info.json', 'a').write('x')\n    print('WROTE')\n"
        "except OSError as exc:\n    print('read-only', exc.strerror)\n"
    )
    (template / "plot.py").write_text(plot)
    inputs = {"run_0": f"{ids[0]}:run_0", "run_1": f"{ids[1]}:work/run_1"}
    started = await call(lab, "run_experiment", {"command": "python3 plot.py", "workdir": "templates/nanoGPT",
                                                 "inputs": inputs, "wait_s": 30})  # fmt: skip
    done = await finish(lab, started["run"]["id"])
    assert done["run"]["state"] == "succeeded", done["log_tail"]
    assert done["run"]["inputs"] == {"run_0": f"{ids[0]}:work/run_0", "run_1": f"{ids[1]}:work/run_1"}
    assert any(line.startswith("read-only") for line in done["log_tail"]) and "WROTE" not in done["log_tail"]
    summary = json.loads((workspace / done["run"]["folder"] / "outputs" / "summary.json").read_text())
    assert summary == {"run_0": 1.47, "run_1": 1.47}
    assert not [path for path in done.get("outputs", []) if "/work/run_" in path]  # inputs are not its outputs
    plain = await call(lab, "run_experiment", {"command": "true", "workdir": "templates/nanoGPT", "wait_s": 30})
    assert plain["run"]["code_hash"] != done["run"]["code_hash"]  # the same code, other inputs: another hash
    refusals = [
        ({"run_0": "nope:run_0"}, "No run"),
        ({"run_0": f"{ids[0]}:missing"}, "has no 'missing'"),
        ({"../x": f"{ids[0]}:run_0"}, "without '..'"),
        ({"plot.py": f"{ids[0]}:run_0"}, "already has"),
    ]
    for bad, says in refusals:
        text = error_text(await call_raw(lab, "run_experiment", {"command": "true", "workdir": "templates/nanoGPT",
                                                                 "inputs": bad}))  # fmt: skip
        assert says in text, text


async def test_a_cache_filled_while_preparing_is_found_offline_and_takes_lock_files(lab: Client) -> None:
    fill = (
        "python3 -c \"import os; h = os.environ['HF_HOME'] + '/hub/models--t--m/blobs'; os.makedirs(h); "
        "open(h + '/w.bin', 'w').write('weights')\""
    )
    done = await finish(lab, (await call(lab, "prepare_data", {"name": "hf", "command": fill, "network": False,
                                                                "wait_s": 30}))["run"]["id"])  # fmt: skip
    assert done["run"]["state"] == "succeeded", done
    use = (
        "import os\nhub = os.environ['HF_HOME'] + '/hub'\n"
        "print('read', open(hub + '/models--t--m/blobs/w.bin').read())\n"
        "os.makedirs(hub + '/.locks/models--t--m'); open(hub + '/.locks/models--t--m/w.lock', 'w').close()\n"
        "print('locked')\n"
        "print('offline', *[os.environ.get(k) for k in ('HF_HUB_OFFLINE', 'HF_DATASETS_OFFLINE', 'WANDB_MODE')])\n"
    )
    started = await call(lab, "run_experiment", {"command": "python3 use.py", "workdir": None,
                                                 "files": {"use.py": use}, "wait_s": 30})  # fmt: skip
    ran = await finish(lab, started["run"]["id"])
    assert ran["run"]["state"] == "succeeded", ran["log_tail"]
    assert {"read weights", "locked", "offline 1 1 offline"} <= set(ran["log_tail"])


async def test_a_failed_preparation_leaves_nothing_and_docker_network_needs_the_setting(
    lab: Client, workspace: Path, backend: str
) -> None:
    failing = "echo x > $RESEARCH_DATA/a; exit 2"
    done = await finish(lab, (await call(lab, "prepare_data", {"name": "bad", "command": failing,
                                                                "network": False}))["run"]["id"])  # fmt: skip
    assert done["run"]["state"] == "failed"
    assert not (workspace / "datasets" / "bad").exists()
    assert not list((workspace / "datasets" / ".incoming").iterdir())
    empty = await finish(lab, (await call(lab, "prepare_data", {"name": "empty", "command": "true",
                                                                 "network": False}))["run"]["id"])  # fmt: skip
    assert empty["run"]["state"] == "failed" and "wrote nothing" in empty["run"]["detail"]
    if backend == "docker":
        settings = Settings(workspace=workspace, backend="docker")
        async with Client(build_server(settings), raise_exceptions=True) as client:
            text = error_text(await call_raw(client, "prepare_data", {"name": "x", "command": "true"}))
        assert "RESEARCH_MCP_DOCKER_ALLOW_NETWORK" in text and "governed" in text


@pytest.mark.bwrap
async def test_matplotlib_in_the_local_sandbox_logs_no_fontconfig_error(workspace: Path) -> None:
    pytest.importorskip("matplotlib")
    settings = Settings(workspace=workspace, backend="local", python_envs={"lab": Path(sys.prefix)})
    script = (
        "import matplotlib\nmatplotlib.use('Agg')\n"
        "from matplotlib import font_manager\nimport matplotlib.pyplot as plt\n"
        "print('font', font_manager.findfont('DejaVu Sans'))\n"
        "plt.plot([1, 2]); plt.savefig('/tmp/p.png'); print('plotted')\n"
    )
    async with Client(build_server(settings), raise_exceptions=True) as client:
        started = await call(client, "run_experiment", {"command": "fc-list >/dev/null; python plot.py",
                                                        "workdir": None, "files": {"plot.py": script},
                                                        "python_env": "lab", "wait_s": 45})  # fmt: skip
        done = await finish(client, started["run"]["id"])
        logs = await call(client, "run_logs", {"run_id": started["run"]["id"], "tail": 500})
    assert done["run"]["state"] == "succeeded", done["log_tail"]
    assert "plotted" in logs["lines"]
    assert not [line for line in logs["lines"] if "Fontconfig error" in line], logs["lines"]


async def test_a_shared_data_folder_is_at_data_too_and_the_workspace_wins_a_clash(
    workspace: Path, tmp_path: Path, backend: Backend
) -> None:
    shared = tmp_path / "shared"
    for folder, text in ((shared / "mnist", "shared mnist"), (shared / "common", "shared common"),
                         (workspace / "datasets" / "common", "workspace common")):  # fmt: skip
        folder.mkdir(parents=True)
        (folder / "README").write_text(text + "\n")
    open_for_sandbox(tmp_path, shared / "mnist")
    open_for_sandbox(tmp_path, shared / "common")
    open_for_sandbox(tmp_path, workspace / "datasets" / "common")
    settings = Settings(workspace=workspace, backend=backend, shared_data=shared)
    async with Client(build_server(settings), raise_exceptions=True) as client:
        started = await call(client, "run_experiment", {"command": "cat /data/mnist/README /data/common/README",
                                                        "workdir": None, "files": {"a": ""}, "wait_s": 30})  # fmt: skip
        done = await finish(client, started["run"]["id"])
    assert done["run"]["state"] == "succeeded", done["log_tail"]
    assert done["log_tail"][-2:] == ["shared mnist", "workspace common"]
    assert sorted(done["run"]["datasets"]) == ["common", "mnist"]

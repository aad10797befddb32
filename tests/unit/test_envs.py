"""An environment's specification, key, build script and failure message, without building anything."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from research_mcp.errors import BadInputError
from research_mcp.sandbox.envspec import (
    EnvSpec,
    build_script,
    env_key,
    failed_package,
    find_links,
    index_env,
    read_spec,
    requirement_lines,
    torch_variant,
)
from research_mcp.workspace import Workspace

KEY_ARGS = {"python": "/usr/bin/python3.11", "backend": "local", "image": None, "installer": "uv", "torch": None}
NAMES = st.from_regex(r"[a-z][a-z0-9]{0,8}(==[0-9]\.[0-9])?", fullmatch=True)


def test_requirement_lines_drop_comments_and_refuse_what_a_build_cannot_follow() -> None:
    text = "# top\nsix==1.16.0  # pinned\n\neinops>=0.7 ; python_version >= '3.8'\nnumpy[extra]\n"
    assert requirement_lines(text, "x") == ["six==1.16.0", "einops>=0.7 ; python_version >= '3.8'", "numpy[extra]"]
    for bad in ("-e .", "./local_pkg", "/abs/pkg.whl", "--index-url https://x", "file:///tmp/x"):
        with pytest.raises(BadInputError, match="option or a local path"):
            requirement_lines(f"six\n{bad}\n", "requirements.txt")
    with pytest.raises(BadInputError, match="line 1"):
        requirement_lines("!!!\n", "requirements")


def test_text_spec_is_sorted_and_without_duplicates(ws: Workspace) -> None:
    spec = read_spec(ws, "six\neinops==0.8.1\nsix\n", None)
    assert spec == EnvSpec(requirements=["einops==0.8.1", "six"], sources=["text"])
    with pytest.raises(BadInputError, match="not both"):
        read_spec(ws, "six", "requirements.txt")
    with pytest.raises(BadInputError, match="nothing to install"):
        read_spec(ws, "# nothing\n", None)
    told = read_spec(ws, "six\n-e .\n--extra-index-url https://download.pytorch.org/whl/cu118\n", None)
    assert told.requirements == ["six"] and told.note is not None and "-e ." in told.note and "cu118" in told.note
    with pytest.raises(BadInputError, match="give path instead"):
        read_spec(ws, "-r other.txt\n", None)
    with pytest.raises(BadInputError, match="local path"):
        read_spec(ws, "./libs/foo\n", None)


def test_a_requirements_file_inlines_its_includes_inside_the_workspace(ws: Workspace) -> None:
    (ws.root / "reqs").mkdir()
    (ws.root / "reqs" / "base.txt").write_text("numpy==2.0.0\n-c constraints.txt\n")
    (ws.root / "requirements.txt").write_text("-r reqs/base.txt\nsix\n--extra-index-url https://example.org\n")
    spec = read_spec(ws, None, "requirements.txt")
    assert spec.requirements == ["numpy==2.0.0", "six"]
    assert spec.sources == ["requirements.txt", "reqs/base.txt"]
    assert spec.note is not None and "-c constraints.txt" in spec.note and "--extra-index-url" in spec.note
    (ws.root / "escape.txt").write_text("-r ../../etc/passwd\n")
    with pytest.raises(BadInputError, match="includes"):
        read_spec(ws, None, "escape.txt")
    with pytest.raises(BadInputError):
        read_spec(ws, None, "../outside.txt")


def test_pyproject_and_environment_yml_give_their_pip_dependencies(ws: Workspace) -> None:
    (ws.root / "pyproject.toml").write_text('[project]\nname = "x"\ndependencies = ["einops>=0.7", "six"]\n')
    assert read_spec(ws, None, "pyproject.toml").requirements == ["einops>=0.7", "six"]
    (ws.root / "environment.yml").write_text(
        "name: x\ndependencies:\n  - python=3.11\n  - numpy\n  - pip:\n    - six==1.16.0\n"
    )
    spec = read_spec(ws, None, "environment.yml")
    assert spec.requirements == ["six==1.16.0"]
    assert spec.note is not None and "numpy" in spec.note
    (ws.root / "notes.md").write_text("six\n")
    with pytest.raises(BadInputError, match="not a dependency file"):
        read_spec(ws, None, "notes.md")


def test_a_repository_folder_uses_its_top_requirements_first(ws: Workspace) -> None:
    repo = ws.root / "repos" / "r"
    (repo / "docs").mkdir(parents=True)
    (repo / "docs" / "requirements.txt").write_text("sphinx\n")
    (repo / "requirements-dev.txt").write_text("pytest\n")
    (repo / "pyproject.toml").write_text('[project]\nname = "r"\ndependencies = ["torch"]\n')
    assert read_spec(ws, None, "repos/r").sources == ["repos/r/pyproject.toml"]
    (repo / "requirements.txt").write_text("einops\n")
    assert read_spec(ws, None, "repos/r") == EnvSpec(requirements=["einops"], sources=["repos/r/requirements.txt"])
    (ws.root / "empty").mkdir()
    with pytest.raises(BadInputError, match="no dependency file"):
        read_spec(ws, None, "empty")


@given(st.lists(NAMES, min_size=1, max_size=8, unique=True), st.randoms())
def test_the_key_depends_on_the_set_of_requirements_not_their_order(names: list[str], rng: random.Random) -> None:
    shuffled = rng.sample(names, len(names))
    first = EnvSpec(requirements=sorted(names), sources=["text"])
    second = EnvSpec(requirements=sorted(shuffled), sources=["other.txt"])
    assert env_key(first, **KEY_ARGS) == env_key(second, **KEY_ARGS)  # type: ignore[arg-type]


@given(st.lists(NAMES, min_size=1, max_size=5, unique=True))
def test_every_input_of_the_key_changes_it(names: list[str]) -> None:
    spec = EnvSpec(requirements=sorted(names), sources=["text"])
    base = env_key(spec, **KEY_ARGS)  # type: ignore[arg-type]
    for field, value in (("python", "/usr/bin/python3.12"), ("backend", "docker"), ("image", "sha256:ab"),
                         ("installer", "pip"), ("torch", "cpu")):  # fmt: skip
        assert env_key(spec, **{**KEY_ARGS, field: value}) != base  # type: ignore[arg-type]
    more = EnvSpec(requirements=sorted([*names, "zzz-extra"]), sources=["text"])
    assert env_key(more, **KEY_ARGS) != base  # type: ignore[arg-type]


def test_the_failed_package_is_found_in_uv_and_pip_messages() -> None:
    uv = (
        "  × No solution found when resolving dependencies:\n"
        "  ╰─▶ Because no-such-pkg-zz was not found in the package registry and you require no-such-pkg-zz==1.0, "
        "we can conclude that your requirements are unsatisfiable.\n"
    )
    assert failed_package(uv, ["six", "no-such-pkg-zz==1.0"]) == "no-such-pkg-zz"
    pip = "ERROR: Could not find a version that satisfies the requirement nopkg==9 (from versions: none)\n"
    assert failed_package(pip, ["nopkg==9"]) == "nopkg"
    build = "  × Failed to build `badpkg==0.1`\n  ├─▶ The build backend returned an error\n"
    assert failed_package(build, ["badpkg==0.1"]) == "badpkg"
    assert failed_package("Killed\n", ["six"]) is None
    assert failed_package("error while installing einops: disk full\n", ["six", "einops"]) == "einops"


def test_the_build_script_ends_with_the_lock_and_the_ready_marker() -> None:
    script = build_script(installer="uv", python="/usr/bin/python3", root="/opt/research-env", torch="cpu",
                          links=["/opt/wheels"])  # fmt: skip
    lines = script.strip().splitlines()
    assert lines[0] == "set -e" and lines[-1] == ': > "$RESEARCH_OUT/ready"'
    assert "--torch-backend cpu" in lines[2] and "--find-links /opt/wheels" in lines[2]
    assert "pip freeze" in lines[3] and "lock.txt" in lines[3]
    assert "--trusted-host" not in script and "insecure" not in script
    pip = build_script(installer="pip", python="/usr/bin/python3", root="/e v", torch=None, links=[])
    assert "-m venv '/e v'" in pip and "--torch-backend" not in pip


def test_torch_is_the_cpu_build_without_gpus_and_pypis_cuda_build_on_a_slurm_cluster_with_them() -> None:
    assert torch_variant(False, backend="local", has_gpu=True, links=False) is None
    assert torch_variant(True, backend="slurm", has_gpu=True, links=True) == "index"
    assert torch_variant(True, backend="slurm", has_gpu=False, links=False) == "cpu"
    assert torch_variant(True, backend="local", has_gpu=True, links=False) == "auto"  # uv sees this machine's driver
    assert torch_variant(True, backend="slurm", has_gpu=True, links=False) == "pypi"  # the nodes' is not seen here
    script = build_script(installer="uv", python="/usr/bin/python3", root="/e", torch="pypi", links=[])
    assert "--torch-backend" not in script  # PyPI's default wheel


def test_index_settings_pass_only_as_http_urls_and_reach_uv(tmp_path: Path) -> None:
    host = {
        "PIP_INDEX_URL": "https://mirror.example/simple",
        "PIP_EXTRA_INDEX_URL": "/not/a/url",
        "HTTPS_PROXY": "http://proxy:3128",
        "HOME": "/root",
    }
    assert index_env(host, "uv") == {
        "PIP_INDEX_URL": "https://mirror.example/simple",
        "UV_DEFAULT_INDEX": "https://mirror.example/simple",
        "HTTPS_PROXY": "http://proxy:3128",
    }
    assert "UV_DEFAULT_INDEX" not in index_env(host, "pip")
    assert find_links({"PIP_FIND_LINKS": f"{tmp_path} /nonexistent https://x.example/wheels"}) == [
        str(tmp_path),
        "https://x.example/wheels",
    ]


def test_the_ca_bundle_is_the_setting_else_the_host_s(tmp_path: Path) -> None:
    from research_mcp.sandbox.envspec import HOST_CA, ca_bundle

    mine = tmp_path / "proxy.pem"
    mine.write_text("-----BEGIN CERTIFICATE-----\n")
    assert ca_bundle(mine) == mine
    assert ca_bundle(None) == (HOST_CA if HOST_CA.is_file() else None)
    with pytest.raises(BadInputError, match="RESEARCH_MCP_CA_BUNDLE"):
        ca_bundle(tmp_path / "missing.pem")

"""Choosing how `sandbox build-image` builds, and what the Dockerfile build sends, checked without an engine."""

from __future__ import annotations

import io
import tarfile
from importlib import resources
from pathlib import Path

import pytest

from research_mcp.cli import main
from research_mcp.errors import SandboxError
from research_mcp.sandbox import images

PEM = b"-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUQ\n-----END CERTIFICATE-----\n"


def members(context: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(context)) as tar:
        out: dict[str, bytes] = {}
        for info in tar.getmembers():
            handle = tar.extractfile(info)
            assert handle is not None, info.name
            out[info.name] = handle.read()
        return out


def test_the_context_holds_the_packaged_dockerfile_and_an_empty_ca_without_a_bundle() -> None:
    packaged = resources.files("research_mcp.sandbox").joinpath(images.DOCKERFILE).read_bytes()
    assert members(images.dockerfile_context()) == {images.DOCKERFILE: packaged, images.CA_IN_CONTEXT: b""}


def test_the_context_carries_the_ca_bundle_it_is_given(tmp_path: Path) -> None:
    bundle = tmp_path / "proxy-ca.pem"
    bundle.write_bytes(PEM)
    assert members(images.dockerfile_context(bundle))[images.CA_IN_CONTEXT] == PEM


def test_the_dockerfile_trusts_the_bundle_only_where_the_context_puts_it_and_defaults_to_a_public_base() -> None:
    text = resources.files("research_mcp.sandbox").joinpath(images.DOCKERFILE).read_text()
    assert f"ARG BASE={images.DEFAULT_BASE}\n" in text
    assert f"COPY {images.CA_IN_CONTEXT} " in text
    for insecure in ("--trusted-host", "PIP_TRUSTED_HOST", "--no-check-certificate", "--insecure", "CERT_NONE"):
        assert insecure not in text


@pytest.mark.parametrize("content", [None, b"not a certificate\n"])
def test_a_missing_or_non_pem_ca_bundle_is_refused_naming_the_setting(tmp_path: Path, content: bytes | None) -> None:
    bundle = tmp_path / "proxy-ca.pem"
    if content is not None:
        bundle.write_bytes(content)
    with pytest.raises(SandboxError, match="RESEARCH_MCP_CA_BUNDLE"):
        images.dockerfile_context(bundle)


@pytest.mark.parametrize(
    ("platform", "euid", "debootstrap", "method"),
    [
        ("linux", 0, "/usr/sbin/debootstrap", "debootstrap"),
        ("linux", 1000, "/usr/sbin/debootstrap", "dockerfile"),
        ("linux", 0, None, "dockerfile"),
        ("darwin", 0, "/usr/local/bin/debootstrap", "dockerfile"),
    ],
)
def test_debootstrap_is_chosen_only_on_linux_as_root_where_it_is_installed(
    monkeypatch: pytest.MonkeyPatch, platform: str, euid: int, debootstrap: str | None, method: str
) -> None:
    monkeypatch.setattr(images.sys, "platform", platform)
    monkeypatch.setattr(images.os, "geteuid", lambda: euid)

    def which(name: str) -> str | None:
        return debootstrap if name == "debootstrap" else None

    monkeypatch.setattr(images.shutil, "which", which)
    assert images.choose_method() == method


@pytest.mark.parametrize(
    ("tag", "base"),
    [("-x", images.DEFAULT_BASE), ("research-sandbox:base", "python:3.12 --network=host"), ("research-sandbox:b", "")],
)
def test_dockerfile_build_names_cannot_smuggle_options(tag: str, base: str) -> None:
    with pytest.raises(SandboxError, match="Bad"):
        images.build_image_from_dockerfile(tag, base=base)


def test_a_failed_certificate_check_points_at_the_ca_setting() -> None:
    tail = "Could not fetch URL https://pypi.org/simple/numpy/: ... [SSL: CERTIFICATE_VERIFY_FAILED] ..."
    assert "set RESEARCH_MCP_CA_BUNDLE" in images._build_hint(tail, None)  # pyright: ignore[reportPrivateUsage]
    given = images._build_hint(tail, Path("/etc/proxy.pem"))  # pyright: ignore[reportPrivateUsage]
    assert "/etc/proxy.pem" in given and "set RESEARCH_MCP_CA_BUNDLE" not in given


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--method", "debootstrap", "--base", "python:3.12-slim"], "--base applies to the Dockerfile build"),
        (["--method", "dockerfile", "--package", "curl"], "--mirror and --package apply to the debootstrap build"),
        (["--method", "dockerfile", "--mirror", "http://mirror"], "--mirror and --package apply to the debootstrap"),
    ],
)
def test_build_image_refuses_flags_of_the_other_method_before_building(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["sandbox", "build-image", "--tag", "research-sandbox:never-built", *argv]) == 2
    assert says in capsys.readouterr().err

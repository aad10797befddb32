"""The NVIDIA GPUs of this machine: which indices a backend on it can give (asked once), and the doctor's probe."""

from __future__ import annotations

import functools
import sys

from pydantic import Field

from research_mcp.model import ToolModel
from research_mcp.probe import PartStatus, part, run_probe, version_of
from research_mcp.sandbox._docker_engine import NVIDIA_TOOLKIT_URL

__all__ = ["Gpu", "host_gpus", "parse_gpus", "probe"]

_NVIDIA_INSTALL = (
    "Install the NVIDIA driver (Debian: enable non-free, then `apt-get install -y nvidia-driver nvidia-smi` and "
    f"reboot) and, for Docker runs, the NVIDIA Container Toolkit (Debian does not ship it): {NVIDIA_TOOLKIT_URL}"
)


class Gpu(ToolModel):
    """One NVIDIA GPU as nvidia-smi reports it."""

    index: int = Field(description="GPU index, as used in CUDA_VISIBLE_DEVICES.")
    name: str = Field(description="Model name.")
    memory_total_mib: int = Field(description="Total memory in MiB.")
    memory_free_mib: int = Field(description="Free memory in MiB at probe time.")
    driver: str | None = Field(default=None, description="NVIDIA driver version.")


@functools.cache
def host_gpus() -> tuple[int, ...]:
    """Indices of this machine's NVIDIA GPUs (asked once: `nvidia-smi -L`); none without a driver. Blocks."""
    import subprocess

    try:
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ()
    if listing.returncode != 0:
        return ()
    return tuple(range(sum(1 for line in listing.stdout.splitlines() if line.startswith("GPU "))))


def parse_gpus(text: str) -> list[Gpu]:
    """The rows of `nvidia-smi --query-gpu=index,name,memory.total,memory.free,driver_version --format=csv`."""
    gpus: list[Gpu] = []
    for row in text.splitlines():
        cells = [cell.strip() for cell in row.split(",")]
        if len(cells) >= 5 and cells[0].isdigit():
            total, free = (int(cell) if cell.isdigit() else 0 for cell in cells[-3:-1])
            name = ", ".join(cells[1:-3])
            gpus.append(
                Gpu(index=int(cells[0]), name=name, memory_total_mib=total, memory_free_mib=free, driver=cells[-1])
            )
    return gpus


async def probe(found: list[Gpu], system: str = sys.platform) -> PartStatus:
    """The driver and the GPUs it sees (appended to `found`), and whether Docker runs can get them."""
    if system == "darwin":
        return part("nvidia", "unsupported", "macOS has no NVIDIA/CUDA driver; runs use the CPU")
    query = "--query-gpu=index,name,memory.total,memory.free,driver_version"
    try:
        out = await run_probe(["nvidia-smi", query, "--format=csv,noheader,nounits"])
    except FileNotFoundError:
        return part("nvidia", "missing", "no NVIDIA driver (nvidia-smi not found)", _NVIDIA_INSTALL)
    gpus = parse_gpus(out.stdout) if out.rc == 0 else []
    if not gpus:
        return part("nvidia", "error", f"nvidia-smi found no usable GPU (exit {out.rc}): {out.line}", _NVIDIA_INSTALL)
    found.extend(gpus)
    driver = gpus[0].driver
    detail = f"{len(gpus)} GPU(s): " + ", ".join(f"{gpu.index}: {gpu.name}" for gpu in gpus)
    try:
        toolkit = await run_probe(["nvidia-ctk", "--version"])
    except FileNotFoundError:
        detail += "; NVIDIA Container Toolkit not found (Docker runs get no GPU)"
        install = f"For GPU Docker runs install the NVIDIA Container Toolkit: {NVIDIA_TOOLKIT_URL}"
        return part("nvidia", "ok", detail, install, driver)
    return part("nvidia", "ok", f"{detail}; container toolkit {version_of(toolkit.line)}", version=driver)

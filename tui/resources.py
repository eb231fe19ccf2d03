"""Memory figures for the dashboard: system RAM, the worker's own RAM, and GPU memory.

GPU memory is read with ``nvidia-smi`` rather than ``torch.cuda``: the interesting number is what the *worker*
holds, which a CUDA context in the TUI process cannot see, and creating that context would itself take hundreds of
megabytes of GPU memory and seconds of startup. Sampling runs in a thread worker, never on the UI thread.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass

import psutil

NVIDIA_SMI_TIMEOUT_SECONDS = 3.0


@dataclass(frozen=True)
class GpuMemory:
    index: int
    name: str
    used_bytes: int
    total_bytes: int


@dataclass(frozen=True)
class ResourceSnapshot:
    ram_used_bytes: int
    ram_total_bytes: int
    worker_ram_bytes: int | None
    gpus: tuple[GpuMemory, ...]


class ResourceProbe:
    """Takes one snapshot at a time; tests substitute a fixed probe so screenshots stay stable."""

    def __init__(self) -> None:
        self._nvidia_smi = shutil.which("nvidia-smi")

    def sample(self, worker_pid: int | None) -> ResourceSnapshot:
        memory = psutil.virtual_memory()
        return ResourceSnapshot(
            ram_used_bytes=memory.total - memory.available,
            ram_total_bytes=memory.total,
            worker_ram_bytes=self._process_tree_rss(worker_pid),
            gpus=self._gpus(),
        )

    @staticmethod
    def _process_tree_rss(pid: int | None) -> int | None:
        if not pid:
            return None
        try:
            process = psutil.Process(pid)
            total = process.memory_info().rss
            for child in process.children(recursive=True):
                try:
                    total += child.memory_info().rss
                except psutil.Error:
                    continue
            return total
        except psutil.Error:
            return None

    def _gpus(self) -> tuple[GpuMemory, ...]:
        if not self._nvidia_smi:
            return ()
        try:
            output = subprocess.run(
                [self._nvidia_smi, "--query-gpu=index,name,memory.used,memory.total", "--format=csv,noheader,nounits"],
                capture_output=True,
                text=True,
                timeout=NVIDIA_SMI_TIMEOUT_SECONDS,
                check=True,
            ).stdout
        except (OSError, subprocess.SubprocessError):
            return ()
        gpus = []
        for line in output.strip().splitlines():
            parts = [part.strip() for part in line.split(",")]
            if len(parts) != 4:
                continue
            try:
                gpus.append(
                    GpuMemory(int(parts[0]), parts[1], int(parts[2]) * 1024 * 1024, int(parts[3]) * 1024 * 1024)
                )
            except ValueError:
                continue
        return tuple(gpus)

"""Whether a test can mount a tiny (or read-only) tmpfs of its own, to meet a real full or read-only disk.

``unshare -rm`` gives the test a private user and mount namespace, so the mount disappears with the process and
nothing on the machine changes. Tests that need it skip with the reason this returns when the sandbox forbids it.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import sys


@functools.cache
def tmpfs_problem() -> str | None:
    """None when ``unshare -rm`` may mount a tmpfs here, else the reason it may not."""
    if sys.platform != "linux":
        return "a tmpfs in a private mount namespace needs Linux"
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        return "unshare or mount (util-linux) is not installed"
    try:
        probe = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
                               capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return "unshare -rm did not answer within 30 s"
    if probe.returncode != 0:
        return ("this kernel or sandbox does not let the tests mount a tmpfs in their own user and mount namespace "
                f"(unshare -rm: {probe.stderr.strip() or probe.returncode})")
    return None

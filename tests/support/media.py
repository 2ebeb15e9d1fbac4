"""Read-only media for tests: a tmpfs remounted read-only in a mount namespace of its own (`unshare -m`)."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path


def can_mount_read_only() -> bool:
    """Whether this machine lets a test mount a file system read-only in a mount namespace of its own."""
    if shutil.which("unshare") is None:
        return False
    probe = "d=$(mktemp -d) && mount -t tmpfs tmpfs $d && mount -o remount,ro $d && umount $d && rmdir $d"
    return subprocess.run(["unshare", "-m", "sh", "-c", probe], capture_output=True, check=False).returncode == 0


def read_only_copy(mount: Path, *files: Path) -> list[str]:
    """Shell lines that mount a tmpfs at `mount`, copy `files` into it and remount it read-only (to run in a
    mount namespace of its own: `unshare -m sh -c ...`)."""
    return [
        f"mount -t tmpfs tmpfs {shlex.quote(str(mount))}",
        *(f"cp {shlex.quote(str(file))} {shlex.quote(str(mount))}/" for file in files),
        f"mount -o remount,ro {shlex.quote(str(mount))}",
    ]

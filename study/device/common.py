"""What every step of the device path shares: its error, the size limit of one device call, and how the bytes
that travel with a call (the working tree and the pack folder) are counted."""
from __future__ import annotations

import subprocess
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
MIB = 2**20
DEVICE_LIMIT_MIB = 64  # working tree + carried folders, per call
DEFAULT_CALL_TIMEOUT_S = 600


class DeviceError(RuntimeError):
    """The pack or the ingest cannot be done (too large, unsafe archive, bad selection)."""


def tree_files(root: Path = PROJECT_ROOT, exclude: Path | None = None) -> dict[str, int]:
    """Files that travel with every call (tracked + untracked-not-ignored, and a shared/ folder) -> bytes."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=root,
                                capture_output=True, check=True).stdout.decode().split("\0")
    except (OSError, subprocess.CalledProcessError) as error:
        raise DeviceError(f"cannot list the working tree with git ls-files in {root}: {error}") from None
    sizes = {}
    for name in filter(None, listed):
        path = root / name
        if exclude is not None and _inside(path, exclude):
            continue
        try:
            sizes[name] = path.lstat().st_size
        except FileNotFoundError:  # tracked but deleted
            continue
    shared = root / "shared"
    if shared.is_dir():
        for path in shared.rglob("*"):
            if path.is_file():
                sizes.setdefault(str(path.relative_to(root)), path.lstat().st_size)
    return sizes


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def folder_bytes(folder: Path) -> int:
    return sum(p.lstat().st_size for p in folder.rglob("*") if p.is_file() or p.is_symlink())


def _mib(n: float) -> str:
    return f"{n / MIB:.1f} MiB"

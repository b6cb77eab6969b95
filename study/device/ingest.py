"""``ingest``: load the results archive a device call brings back into DuckDB. The archive comes from another
machine, so it is extracted only after refusing absolute paths, '..', links and special files."""
from __future__ import annotations

import json
import shutil
import tarfile
import tempfile
import time
from pathlib import Path, PurePosixPath

from study.device.common import PROJECT_ROOT, DeviceError, _inside
from study.store import DEFAULT_DB

MAX_ARCHIVE_BYTES = 2 * 2**30  # expanded size of a results archive (a call brings back at most 64 MiB packed)


def _safe_members(archive: tarfile.TarFile) -> list[tarfile.TarInfo]:
    members = []
    for member in archive.getmembers():
        name = member.name
        parts = PurePosixPath(name).parts
        if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or ".." in parts or "\\" in name:
            raise DeviceError(f"unsafe path {name!r} in the archive (absolute or with '..'); nothing extracted")
        if member.issym() or member.islnk():
            raise DeviceError(f"link {name!r} in the archive; nothing extracted")
        if not (member.isfile() or member.isdir()):
            raise DeviceError(f"special file {name!r} in the archive; nothing extracted")
        members.append(member)
    if sum(m.size for m in members if m.isfile()) > MAX_ARCHIVE_BYTES:
        raise DeviceError(f"the archive expands to over {MAX_ARCHIVE_BYTES / 2**30:g} GiB; nothing extracted")
    return members


def extract_archive(path: str | Path, target: Path) -> list[Path]:
    """Regular files of a .tar.gz into ``target``, after refusing absolute paths, '..', links, devices."""
    try:
        with tarfile.open(path, "r:*") as archive:
            members = _safe_members(archive)
            written = []
            for member in members:
                relative = PurePosixPath(*[p for p in PurePosixPath(member.name).parts if p not in (".", "")])
                if not relative.parts:
                    continue
                destination = target.joinpath(*relative.parts)
                if not _inside(destination, target):
                    raise DeviceError(f"unsafe path {member.name!r} in the archive")
                if member.isdir():
                    destination.mkdir(parents=True, exist_ok=True)
                    continue
                destination.parent.mkdir(parents=True, exist_ok=True)
                with archive.extractfile(member) as source, open(destination, "wb") as sink:
                    shutil.copyfileobj(source, sink)
                written.append(destination)
            return written
    except (tarfile.TarError, OSError, EOFError) as error:
        raise DeviceError(f"cannot read {path}: {error}") from None


def ingest_archive(path: str | Path, db: str | Path = DEFAULT_DB, keep_logs: str | Path | None = None) -> dict:
    """Extract a results.tar.gz safely and ingest its result files into DuckDB (idempotent)."""
    from study.store import ingest

    path = Path(path)
    with tempfile.TemporaryDirectory(prefix="eot-ingest-") as folder:
        root = Path(folder)
        files = extract_archive(path, root)
        results = sorted(f for f in files if f.suffix == ".json" and f.parent.name == "results")
        failed = {}
        for f in files:
            if f.suffix == ".failed":
                try:
                    record = json.loads(f.read_text())
                    failed[str(record.get("run_id", f.stem))] = str(record.get("error", ""))[:300]
                except ValueError:
                    failed[f.stem] = "unreadable failure record"
        report = ingest(results, db) if results else {"ingested": 0, "already_stored": 0, "rejected": {}}
        report["rejected"] = {Path(name).name: why for name, why in report["rejected"].items()}
        report.update(archive=str(path), result_files=len(results), failed_on_device=failed)
        exit_code = root / "exit_code.txt"
        report["device_exit_code"] = exit_code.read_text().strip() if exit_code.exists() else None
        logs_target = Path(keep_logs) if keep_logs else (
            PROJECT_ROOT / "logs" / "device" / f"{time.strftime('%Y%m%d-%H%M%S')}-{path.name.split('.')[0]}")
        extras = [f for f in files if f not in results and f.suffix != ".failed"]
        if extras or failed:
            logs_target.mkdir(parents=True, exist_ok=True)
            for f in extras + [f for f in files if f.suffix == ".failed"]:
                shutil.copyfile(f, logs_target / f.name)
            report["logs"] = str(logs_target)
    return report

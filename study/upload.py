"""Safe intake of a user's images (a .zip or a folder): bounded, no path traversal, no links, cleaned up.

Accepted layouts: ``CLASS/*.jpg|png`` or ``{train,test}/CLASS/*`` (one optional top-level folder around either).
"""
from __future__ import annotations

import shutil
import stat
import tempfile
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from study.datasets import IMAGE_SUFFIXES, is_hidden

MAX_UPLOAD_BYTES = 200 * 2**20  # the .zip as uploaded
MAX_EXTRACTED_BYTES = 500 * 2**20  # after decompression (zip bombs)
MAX_FILES = 5_000  # entries of an uploaded .zip (each is extracted)
MAX_FOLDER_FILES = 200_000  # images listed in a local folder (only listed; the probe decodes at most 600)
MAX_COMPRESSION_RATIO = 200  # a single entry expanding more than this is refused as a bomb


class UploadError(ValueError):
    """The upload is unusable or unsafe; the message says why."""


@dataclass
class Inventory:
    """Image files per class found in an intake folder, and what was skipped."""
    root: Path
    files: dict[str, list[Path]]
    test_files: set[Path] = field(default_factory=set)  # the files under test/ in a {train,test}/CLASS/ layout
    skipped_non_image: list[str] = field(default_factory=list)
    skipped_links: list[str] = field(default_factory=list)


def _safe_member(name: str) -> PurePosixPath:
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise UploadError(f"zip entry {name!r} has an absolute path; refusing the upload")
    if ".." in path.parts:
        raise UploadError(f"zip entry {name!r} points outside the archive ('..'); refusing the upload")
    return path


def extract_zip(archive: Path, target: Path) -> list[str]:
    """Extract image entries into ``target`` within the limits; returns the names of skipped link entries."""
    if archive.stat().st_size > MAX_UPLOAD_BYTES:
        raise UploadError(f"the upload is {archive.stat().st_size / 2**20:.0f} MiB; the limit is "
                          f"{MAX_UPLOAD_BYTES // 2**20} MiB")
    try:
        bundle = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as error:
        raise UploadError(f"not a readable .zip file ({error})") from None
    links = []
    with bundle:
        entries = bundle.infolist()
        if len(entries) > MAX_FILES:
            raise UploadError(f"the zip holds {len(entries):,} entries; the limit is {MAX_FILES:,}")
        declared = sum(entry.file_size for entry in entries)
        if declared > MAX_EXTRACTED_BYTES:
            raise UploadError(f"the zip expands to {declared / 2**20:.0f} MiB; the limit is "
                              f"{MAX_EXTRACTED_BYTES // 2**20} MiB")
        written = 0
        for entry in entries:
            path = _safe_member(entry.filename)
            if stat.S_ISLNK(entry.external_attr >> 16):
                links.append(entry.filename)
                continue
            if entry.is_dir():
                continue
            if entry.compress_size and entry.file_size / entry.compress_size > MAX_COMPRESSION_RATIO:
                raise UploadError(f"zip entry {entry.filename!r} expands {entry.file_size / entry.compress_size:.0f}"
                                  f"-fold: refusing a likely zip bomb")
            destination = target.joinpath(*path.parts)
            destination.parent.mkdir(parents=True, exist_ok=True)
            with bundle.open(entry) as source, open(destination, "wb") as sink:
                while chunk := source.read(1 << 20):  # count real bytes: declared sizes can lie
                    written += len(chunk)
                    if written > MAX_EXTRACTED_BYTES:
                        raise UploadError(f"the zip expands past {MAX_EXTRACTED_BYTES // 2**20} MiB; refusing it")
                    sink.write(chunk)
    return links


def _layout_root(root: Path) -> Path:
    """Step into a single wrapping folder (e.g. 'my_data/' inside the zip)."""
    children = [p for p in root.iterdir() if not p.name.startswith((".", "__MACOSX"))]
    if len(children) == 1 and children[0].is_dir() and not children[0].is_symlink():
        inner = children[0]
        if any(p.is_dir() for p in inner.iterdir()):
            return inner
    return root


def inventory(root: Path, max_files: int = MAX_FILES) -> Inventory:
    """Image files per class, for ``CLASS/*`` or ``{train,test}/CLASS/*`` (both splits pooled per class; the test
    split's files are also listed in ``test_files``, so the probe can test where the user will); listing stops with
    an error past ``max_files`` images."""
    root = _layout_root(root)
    splits = [root / "train", root / "test"] if (root / "train").is_dir() else [root]
    found = Inventory(root, {})
    listed = 0
    for split in splits:
        if not split.is_dir():
            continue
        for folder in sorted(split.iterdir()):
            if folder.is_symlink():
                found.skipped_links.append(str(folder.relative_to(root)))
                continue
            if not folder.is_dir() or folder.name.startswith((".", "__MACOSX")):
                if folder.is_file():
                    found.skipped_non_image.append(str(folder.relative_to(root)))
                continue
            for path in sorted(folder.rglob("*")):
                relative = str(path.relative_to(root))
                if path.is_symlink():
                    found.skipped_links.append(relative)
                elif path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not is_hidden(path, folder):
                    found.files.setdefault(folder.name, []).append(path)
                    if split.name == "test" and split != root:
                        found.test_files.add(path)
                    listed += 1
                    if listed > max_files:
                        raise UploadError(f"more than {max_files:,} images; the probe uses at most 60 per class: "
                                          "give it a smaller folder or a sample")
                elif path.is_file():
                    found.skipped_non_image.append(relative)
    classes = {name: files for name, files in found.files.items() if files}
    if len(classes) < 2:
        raise UploadError(f"found {len(classes)} class folder(s) with images; at least 2 are needed "
                          "(layout: CLASS/*.jpg or train/CLASS/*.jpg)")
    small = [name for name, files in classes.items() if len(files) < 2]
    if small:
        raise UploadError(f"class(es) {', '.join(sorted(small)[:5])} have fewer than 2 images; at least 2 are needed")
    found.files = classes
    return found


@contextmanager
def intake(source: str | Path):
    """Yield an Inventory of a folder or .zip; a zip is extracted to a temporary folder removed on exit."""
    source = Path(source)
    if not source.exists():
        raise UploadError(f"{source} does not exist")
    if source.is_dir():  # only listed, and the probe decodes a sample of it: a whole dataset's folder is fine
        yield inventory(source, MAX_FOLDER_FILES)
        return
    folder = Path(tempfile.mkdtemp(prefix="eot-upload-"))
    try:
        links = extract_zip(source, folder)
        found = inventory(folder)
        found.skipped_links.extend(links)
        yield found
    finally:
        shutil.rmtree(folder, ignore_errors=True)

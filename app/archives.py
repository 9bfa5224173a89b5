"""Safe extraction of uploaded .tar.gz / .tar / .zip archives.

We never call ``extractall``: every member is checked first (relative path, no ``..``,
no links, no devices, only files and folders), the member count is capped while
iterating, and bytes are counted while they are written so that a decompression bomb
stops at the cap even when its headers lie about sizes.
"""

from __future__ import annotations

import gzip
import stat
import tarfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from app.errors import PayloadTooLarge, Unprocessable

CHUNK = 1 << 20
GZIP_MAGIC = b"\x1f\x8b"
ZIP_MAGIC = b"PK\x03\x04"


class ArchiveError(Unprocessable):
    code = "invalid_archive"


def _archive_kind(path: Path) -> str:
    with path.open("rb") as fh:
        head = fh.read(262)
    if head.startswith(ZIP_MAGIC):
        return "zip"
    if head.startswith(GZIP_MAGIC) or (len(head) >= 262 and head[257:262] == b"ustar"):
        return "tar"
    raise ArchiveError("the upload is not a .tar.gz, .tar or .zip archive", param="file")


def _safe_relpath(name: str) -> PurePosixPath | None:
    """The member's relative path, None for the archive root, ArchiveError when it could escape."""
    if "\x00" in name or "\\" in name:
        raise ArchiveError(f"archive member {name!r} has an invalid character in its name", param="file")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise ArchiveError(f"archive member {name!r} has an absolute path", param="file")
    parts = [p for p in PurePosixPath(name).parts if p not in ("", ".")]
    if ".." in parts:
        raise ArchiveError(f"archive member {name!r} points outside the archive ('..')", param="file")
    return PurePosixPath(*parts) if parts else None


class _Budget:
    """Counts members and uncompressed bytes against the caps."""

    def __init__(self, max_files: int, max_bytes: int) -> None:
        self.max_files, self.max_bytes = max_files, max_bytes
        self.files = 0
        self.bytes = 0

    def add_member(self) -> None:
        self.files += 1
        if self.files > self.max_files:
            raise PayloadTooLarge(f"the archive has more than {self.max_files:,} members",
                                  param="file", code="too_many_files")

    def add_bytes(self, n: int) -> None:
        self.bytes += n
        if self.bytes > self.max_bytes:
            raise PayloadTooLarge(f"the archive expands to more than {self.max_bytes:,} bytes",
                                  param="file", code="archive_too_large")


def _copy(src: BinaryIO, target: Path, budget: _Budget) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("wb") as out:
        while chunk := src.read(CHUNK):
            budget.add_bytes(len(chunk))
            out.write(chunk)


def _extract_tar(path: Path, dest: Path, budget: _Budget) -> None:
    try:
        with tarfile.open(path, mode="r:*") as tar:
            for member in tar:  # streaming iteration: the count cap applies before all headers are read
                budget.add_member()
                rel = _safe_relpath(member.name)
                if member.issym() or member.islnk():
                    raise ArchiveError(f"archive member {member.name!r} is a link; links are not allowed",
                                       param="file")
                if not (member.isfile() or member.isdir()):
                    raise ArchiveError(f"archive member {member.name!r} is a device or special file",
                                       param="file")
                if rel is None or member.isdir():
                    continue
                if member.size > budget.max_bytes:  # fail fast on an honest header
                    budget.add_bytes(member.size)
                src = tar.extractfile(member)
                if src is not None:
                    _copy(src, dest / rel, budget)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise ArchiveError(f"the archive is damaged: {exc}", param="file") from None


def _extract_zip(path: Path, dest: Path, budget: _Budget) -> None:
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            for info in infos:
                budget.add_member()
                rel = _safe_relpath(info.filename)
                mode = info.external_attr >> 16  # Unix mode when the zip was made on Unix, else 0
                if stat.S_ISLNK(mode):
                    raise ArchiveError(f"archive member {info.filename!r} is a link; links are not allowed",
                                       param="file")
                if stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                    raise ArchiveError(f"archive member {info.filename!r} is a device or special file",
                                       param="file")
                if rel is None or info.is_dir():
                    continue
                if info.file_size > budget.max_bytes:  # fail fast on an honest header
                    budget.add_bytes(info.file_size)
                with zf.open(info) as src:
                    _copy(src, dest / rel, budget)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError, zlib.error) as exc:
        raise ArchiveError(f"the archive is damaged or uses an unsupported feature: {exc}", param="file") from None


def safe_extract(archive: str | Path, dest: str | Path, *, max_files: int, max_bytes: int) -> Path:
    """Extract ``archive`` into ``dest`` (created) after checking every member; returns ``dest``."""
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    budget = _Budget(max_files, max_bytes)
    if _archive_kind(archive) == "zip":
        _extract_zip(archive, dest, budget)
    else:
        _extract_tar(archive, dest, budget)
    return dest


def find_model_dir(root: Path) -> Path:
    """The folder holding ``config.json``: the archive root or its single top-level folder."""
    if (root / "config.json").is_file():
        return root
    children = [c for c in root.iterdir() if c.name not in ("__MACOSX",) and not c.name.startswith("._")]
    if len(children) == 1 and children[0].is_dir() and (children[0] / "config.json").is_file():
        return children[0]
    raise ArchiveError("the archive has no config.json at its root or in a single top-level folder; "
                       "pack the Hugging Face model directory itself", param="file")

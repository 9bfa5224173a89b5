"""Safe extraction of uploaded .tar.gz / .tar / .zip archives.

We never call ``extractall``: every member is checked first (relative path, no ``..``,
no links, no devices, only files and folders), the member count is capped while
iterating, and bytes are counted while they are written so that a decompression bomb
stops at the cap even when its headers lie about sizes.

Issue 18 bounded what the archive's *headers* cost too: a tar's GNU long-name and pax
headers are refused past ``MAX_HEADER_BYTES`` before tarfile reads them (a 50 MiB long
name was read whole, then a 500 with a 52 MB traceback); a zip's entry count and central
directory size are read from its end record before ``zipfile`` parses the directory (400,000
entries cost +196 MB first); member names are bounded (``MAX_NAME_CHARS``, components
``MAX_PART_CHARS``); a file and a folder of one name, or one name twice, are a 422; and the
bytes written are bounded by ``max_ratio`` times the upload's size as well as ``max_bytes``.
Every name shown in a message is cut to ``SHOWN_CHARS``.
"""

from __future__ import annotations

import gzip
import stat
import struct
import tarfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from app.errors import PayloadTooLarge, Unprocessable

CHUNK = 1 << 20
GZIP_MAGIC = b"\x1f\x8b"
ZIP_MAGIC = b"PK\x03\x04"
ZIP_EOCD = b"PK\x05\x06"
ZIP64_LOCATOR = b"PK\x06\x07"
MAX_HEADER_BYTES = 64 * 1024  # a GNU long name / pax header: a path, never more
MAX_NAME_CHARS = 1024
MAX_PART_CHARS = 255
SHOWN_CHARS = 120
CENTRAL_ENTRY_BYTES = 46 + MAX_NAME_CHARS + 2 * 65_535  # the largest sane central directory entry


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


def shown(name: str) -> str:
    """A member name as messages and logs show it: repr, at most ``SHOWN_CHARS`` characters."""
    return repr(name) if len(name) <= SHOWN_CHARS else repr(name[:SHOWN_CHARS]) + f"... ({len(name):,} characters)"


class _BoundedTarInfo(tarfile.TarInfo):
    """tarfile's member header, refusing a long-name or pax header larger than ``MAX_HEADER_BYTES``
    before tarfile reads it into memory."""

    def _proc_gnulong(self, tarfile_: tarfile.TarFile):  # noqa: ANN202 - tarfile's private hook
        self._bounded()
        return super()._proc_gnulong(tarfile_)

    def _proc_pax(self, tarfile_: tarfile.TarFile):  # noqa: ANN202
        self._bounded()
        return super()._proc_pax(tarfile_)

    def _bounded(self) -> None:
        if self.size > MAX_HEADER_BYTES:
            raise ArchiveError(f"the archive has a {self.size:,}-byte name or extended header; the limit is "
                               f"{MAX_HEADER_BYTES:,}", param="file")


def _safe_relpath(name: str) -> PurePosixPath | None:
    """The member's relative path, None for the archive root, ArchiveError when it could escape."""
    if len(name) > MAX_NAME_CHARS:
        raise ArchiveError(f"archive member {shown(name)} has a name longer than {MAX_NAME_CHARS:,} characters",
                           param="file")
    if any(len(part) > MAX_PART_CHARS for part in name.split("/")):
        raise ArchiveError(f"archive member {shown(name)} has a path component longer than {MAX_PART_CHARS} "
                           "characters", param="file")
    if "\x00" in name or "\\" in name:
        raise ArchiveError(f"archive member {shown(name)} has an invalid character in its name", param="file")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise ArchiveError(f"archive member {shown(name)} has an absolute path", param="file")
    parts = [p for p in PurePosixPath(name).parts if p not in ("", ".")]
    if ".." in parts:
        raise ArchiveError(f"archive member {shown(name)} points outside the archive ('..')", param="file")
    return PurePosixPath(*parts) if parts else None


class _Budget:
    """Counts members and uncompressed bytes against the caps; remembers the paths taken."""

    def __init__(self, max_files: int, max_bytes: int) -> None:
        self.max_files, self.max_bytes = max_files, max_bytes
        self.files = 0
        self.bytes = 0
        self.file_paths: set[PurePosixPath] = set()
        self.dir_paths: set[PurePosixPath] = set()

    def claim(self, rel: PurePosixPath, is_dir: bool, name: str) -> None:
        """A member's path: 422 for a name given twice, or a file where a folder is (or the reverse)."""
        parents = set(rel.parents) - {PurePosixPath(".")}
        if (rel in self.file_paths) or (not is_dir and rel in self.dir_paths) or (parents & self.file_paths):
            raise ArchiveError(f"archive member {shown(name)} clashes with another member of the same path "
                               "(a name given twice, or a file and a folder of one name)", param="file")
        self.dir_paths |= parents
        (self.dir_paths if is_dir else self.file_paths).add(rel)

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
        with tarfile.open(path, mode="r:*", tarinfo=_BoundedTarInfo) as tar:
            for member in tar:  # streaming iteration: the count cap applies before all headers are read
                budget.add_member()
                rel = _safe_relpath(member.name)
                if member.issym() or member.islnk():
                    raise ArchiveError(f"archive member {shown(member.name)} is a link; links are not allowed",
                                       param="file")
                if not (member.isfile() or member.isdir()):
                    raise ArchiveError(f"archive member {shown(member.name)} is a device or special file",
                                       param="file")
                if rel is None:
                    continue
                budget.claim(rel, member.isdir(), member.name)
                if member.isdir():
                    continue
                if member.size > budget.max_bytes:  # fail fast on an honest header
                    budget.add_bytes(member.size)
                src = tar.extractfile(member)
                if src is not None:
                    _copy(src, dest / rel, budget)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise ArchiveError(f"the archive is damaged: {str(exc)[:SHOWN_CHARS]}", param="file") from None


def _zip_directory_size(path: Path) -> tuple[int, int]:
    """(entries, central directory bytes) from the end record (zip64's when present), read
    without parsing the directory: ``zipfile.ZipFile()`` parses every entry before we could count."""
    with path.open("rb") as fh:
        size = fh.seek(0, 2)
        start = max(0, size - (22 + 65_535))
        fh.seek(start)
        tail = fh.read()
        at = tail.rfind(ZIP_EOCD)
        if at < 0 or len(tail) - at < 22:
            raise ArchiveError("the archive is damaged: no zip end record", param="file")
        entries, cd_size = struct.unpack("<H", tail[at + 10:at + 12])[0], struct.unpack("<I", tail[at + 12:at + 16])[0]
        locator = tail[at - 20:at] if at >= 20 else b""
        if locator.startswith(ZIP64_LOCATOR):
            fh.seek(struct.unpack("<Q", locator[8:16])[0])
            record = fh.read(56)
            if len(record) == 56 and record.startswith(b"PK\x06\x06"):
                entries, cd_size = struct.unpack("<Q", record[32:40])[0], struct.unpack("<Q", record[40:48])[0]
    return entries, cd_size


def _extract_zip(path: Path, dest: Path, budget: _Budget) -> None:
    entries, cd_size = _zip_directory_size(path)
    if entries > budget.max_files:
        raise PayloadTooLarge(f"the archive has more than {budget.max_files:,} members", param="file",
                              code="too_many_files")
    if cd_size > budget.max_files * CENTRAL_ENTRY_BYTES:
        raise ArchiveError(f"the archive's central directory is {cd_size:,} bytes, too large for "
                           f"{budget.max_files:,} members", param="file")
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            for info in infos:
                budget.add_member()
                rel = _safe_relpath(info.filename)
                mode = info.external_attr >> 16  # Unix mode when the zip was made on Unix, else 0
                if stat.S_ISLNK(mode):
                    raise ArchiveError(f"archive member {shown(info.filename)} is a link; links are not allowed",
                                       param="file")
                if stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                    raise ArchiveError(f"archive member {shown(info.filename)} is a device or special file",
                                       param="file")
                if rel is None:
                    continue
                budget.claim(rel, info.is_dir(), info.filename)
                if info.is_dir():
                    continue
                if info.file_size > budget.max_bytes:  # fail fast on an honest header
                    budget.add_bytes(info.file_size)
                with zf.open(info) as src:
                    _copy(src, dest / rel, budget)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError, zlib.error) as exc:
        raise ArchiveError(f"the archive is damaged or uses an unsupported feature: {str(exc)[:SHOWN_CHARS]}",
                           param="file") from None


def safe_extract(archive: str | Path, dest: str | Path, *, max_files: int, max_bytes: int,
                 max_ratio: float | None = None) -> Path:
    """Extract ``archive`` into ``dest`` (created) after checking every member; returns ``dest``.

    At most ``max_bytes`` are written, and at most ``max_ratio`` times the archive's own size
    (a small upload must not fill the disk up to the absolute cap)."""
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    if max_ratio is not None:
        max_bytes = min(max_bytes, max(1, int(max_ratio * archive.stat().st_size)))
    budget = _Budget(max_files, max_bytes)
    try:
        if _archive_kind(archive) == "zip":
            _extract_zip(archive, dest, budget)
        else:
            _extract_tar(archive, dest, budget)
    except OSError as exc:  # a member the file system refuses (a name too long for it, a clash we missed)
        raise ArchiveError(f"cannot extract the archive: {exc.strerror or type(exc).__name__}", param="file") from None
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

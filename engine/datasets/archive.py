"""Reading an uploaded zip safely: every check runs on the central directory before a byte
is unpacked (entry count, total uncompressed size, compression ratios, paths that would
escape the archive, symlinks, encryption); reading an entry never yields more than its
declared size (zipfile stops there and checks the CRC)."""

from __future__ import annotations

import io
import re
import stat
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

from engine.errors import ArchiveBomb, InvalidArchive, UnsafeArchivePath

#: Entries smaller than this are not judged by their own compression ratio (a blank PNG
#: compresses well); the archive's overall ratio still counts.
RATIO_MIN_BYTES = 1024 * 1024


@dataclass(frozen=True)
class ArchiveLimits:
    max_entries: int
    max_uncompressed_bytes: int
    max_ratio: float


_DRIVE = re.compile(r"^[A-Za-z]:")


def safe_name(name: str) -> str:
    """The entry's path, normalised ("a/b.png"), or UnsafeArchivePath when it is absolute or
    climbs out (``..``)."""
    norm = name.replace("\\", "/")
    parts = [p for p in norm.split("/") if p not in ("", ".")]
    if norm.startswith("/") or _DRIVE.match(norm) or ".." in parts or "\x00" in norm:
        raise UnsafeArchivePath(
            f"The archive entry {name!r} points outside the archive (an absolute path or "
            "'..'). Zip the files with paths relative to the archive's root.",
            details={"entry": name[:300], "reason": "traversal"},
        )
    return "/".join(parts)


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    return stat.S_ISLNK(info.external_attr >> 16)


def open_archive(data: bytes, limits: ArchiveLimits) -> zipfile.ZipFile:
    """The zip, once every entry passed the checks (else the error that says why)."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        infos = zf.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError,
            NotImplementedError, RuntimeError, zlib.error):
        raise InvalidArchive(
            "The upload is not a readable zip archive. Send a .zip of images.",
            details={"bytes": len(data)},
        ) from None
    if len(infos) > limits.max_entries:
        raise ArchiveBomb(
            f"The archive has {len(infos)} entries; the limit is {limits.max_entries}. "
            "Split it into several datasets.",
            details={"limit": "entries", "entries": len(infos), "max": limits.max_entries},
        )
    total = 0
    compressed = 0
    for info in infos:
        safe_name(info.filename)
        if _is_symlink(info):
            raise UnsafeArchivePath(
                f"The archive entry {info.filename!r} is a symbolic link. Zip the files "
                "themselves, not links to them.",
                details={"entry": info.filename[:300], "reason": "symlink"},
            )
        if info.flag_bits & 0x1:
            raise InvalidArchive(
                f"The archive entry {info.filename!r} is encrypted. Send an unencrypted zip.",
                details={"entry": info.filename[:300]},
            )
        total += info.file_size
        compressed += info.compress_size
        if info.file_size > RATIO_MIN_BYTES and info.file_size > limits.max_ratio * max(
            info.compress_size, 1
        ):
            raise ArchiveBomb(
                f"The archive entry {info.filename!r} unpacks {info.file_size} bytes from "
                f"{info.compress_size}: more than {limits.max_ratio:g} times. Images do not "
                "compress that well; this looks like a zip bomb.",
                details={"limit": "ratio", "entry": info.filename[:300],
                         "ratio": round(info.file_size / max(info.compress_size, 1), 1),
                         "max": limits.max_ratio},
            )
    if total > limits.max_uncompressed_bytes:
        raise ArchiveBomb(
            f"The archive unpacks to {total} bytes; the limit is "
            f"{limits.max_uncompressed_bytes}. Send fewer or smaller images.",
            details={"limit": "uncompressed_bytes", "bytes": total,
                     "max": limits.max_uncompressed_bytes},
        )
    if total > RATIO_MIN_BYTES and total > limits.max_ratio * max(compressed, 1):
        raise ArchiveBomb(
            f"The archive unpacks {total} bytes from {compressed}: more than "
            f"{limits.max_ratio:g} times. This looks like a zip bomb.",
            details={"limit": "ratio", "ratio": round(total / max(compressed, 1), 1),
                     "max": limits.max_ratio},
        )
    return zf


def entries(zf: zipfile.ZipFile) -> Iterator[tuple[str, bytes]]:
    """(normalised path, bytes) of each file (directories skipped), in archive order."""
    for info in zf.infolist():
        if info.is_dir():
            continue
        name = safe_name(info.filename)
        try:
            with zf.open(info) as fh:
                data = fh.read(info.file_size + 1)
        except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, RuntimeError,
                ValueError, zlib.error):
            raise InvalidArchive(
                f"The archive entry {info.filename!r} could not be read (damaged, or an "
                "unsupported compression). Send a zip made with deflate or store.",
                details={"entry": info.filename[:300]},
            ) from None
        if len(data) > info.file_size:  # pragma: no cover - zipfile stops at file_size
            raise ArchiveBomb(
                f"The archive entry {info.filename!r} unpacks to more than it declares.",
                details={"limit": "declared_size", "entry": info.filename[:300]},
            )
        yield name, data

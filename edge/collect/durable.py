"""Files written so that a crash or a power cut leaves the old state or the new one, never half a file.

The bytes go to a hidden temp file beside the target (``.<name>.tmp``), are fsynced, and the temp file is
renamed over the target; the folder is fsynced so that the rename itself survives a power cut. Whoever
owns a folder removes its leftover temp files when it opens it (``remove_temp_files``).
"""

import os
from pathlib import Path

TEMP_SUFFIX = ".tmp"


def temp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}{TEMP_SUFFIX}")


def is_temp(name: str) -> bool:
    return name.startswith(".") and name.endswith(TEMP_SUFFIX)


def write_atomic(path: Path, data: bytes, *, sync_folder: bool = True) -> None:
    """Replace ``path`` with ``data`` in one rename; on failure the temp file is removed and OSError raised."""
    temp = temp_path(path)
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        temp.replace(path)
    except OSError:
        temp.unlink(missing_ok=True)
        raise
    if sync_folder:
        fsync_folder(path.parent)


def fsync_folder(folder: Path) -> None:
    """Make the folder's latest renames and unlinks durable."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def append_line(path: Path, line: bytes) -> None:
    """Append one line with a single write to an O_APPEND file, so that lines from several writers never
    interleave; fsynced, because it records what the images beside it are."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line if line.endswith(b"\n") else line + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_temp_files(folder: Path) -> int:
    """Remove what interrupted writes left in ``folder``; return how many files that was."""
    removed = 0
    with os.scandir(folder) as entries:
        for entry in entries:
            if is_temp(entry.name) and entry.is_file(follow_symlinks=False):
                Path(entry.path).unlink(missing_ok=True)
                removed += 1
    return removed

"""Files only bastion's own user may read: the data directory, the SQLite database (and its
``-wal`` and ``-shm`` files), ``secret.key`` and the configuration file.

They are created with their final mode (0700 for directories, 0600 for files) in the call that
creates them, whatever the umask: ``mkdir(mode)`` and ``open(O_CREAT | O_EXCL, mode)`` can only
lose bits to a umask, never gain them, and nothing changes the umask, which is per process and
would race with other threads. SQLite gives ``-wal`` and ``-shm`` the database file's mode, so
creating the (empty) database file first is enough. Files that exist already keep their mode:
:func:`warn_loose_modes` names each one other users may read, and how to fix it.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from bastion.logs import get_logger

if TYPE_CHECKING:
    from bastion.config import Settings

log = get_logger("bastion.files")

DIRECTORY_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> None:
    """Create directory ``path`` (and missing parents) with mode 0700 if it does not exist."""
    path.mkdir(mode=DIRECTORY_MODE, parents=True, exist_ok=True)


def create_private(path: Path) -> None:
    """Create ``path`` empty with mode 0600 unless it (or its directory) does not exist."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
    except (FileExistsError, FileNotFoundError):
        return  # there already, or no directory: what opens it next reports that
    os.close(fd)


def write_private(path: Path, text: str) -> None:
    """Write a new file ``path`` with mode 0600 (FileExistsError if it exists)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)


def sqlite_file(url: str) -> Path | None:
    """The database file of an SQLite URL (None for another database or an in-memory one)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    name = parsed.database
    if parsed.get_backend_name() != "sqlite" or not name or name == ":memory:":
        return None
    return None if name.startswith("file:") else Path(name)


def _private_paths(settings: Settings, config_file: Path | None) -> Iterable[Path]:
    yield settings.data_dir
    database = sqlite_file(settings.effective_database_url)
    if database is not None:
        yield database
        yield database.with_name(database.name + "-wal")
        yield database.with_name(database.name + "-shm")
    if settings.secret_key is None:
        yield settings.data_dir / "secret.key"
    if config_file is not None:
        yield config_file


def loose_modes(settings: Settings, config_file: Path | None = None) -> list[tuple[Path, int]]:
    """The existing private paths that give their group or other users any access, with their
    modes."""
    found: list[tuple[Path, int]] = []
    for path in _private_paths(settings, config_file):
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except OSError:
            continue
        if mode & 0o077:
            found.append((path, mode))
    return found


def warn_loose_modes(settings: Settings, config_file: Path | None = None) -> None:
    """Log a warning for each path of :func:`loose_modes`: the path, its mode, the fix."""
    for path, mode in loose_modes(settings, config_file):
        fix = DIRECTORY_MODE if path.is_dir() else FILE_MODE
        log.warning(
            "%s has mode %04o: other local users can read it; run `chmod %o %s`",
            path,
            mode,
            fix,
            path,
        )


__all__ = [
    "DIRECTORY_MODE",
    "FILE_MODE",
    "create_private",
    "loose_modes",
    "private_dir",
    "sqlite_file",
    "warn_loose_modes",
    "write_private",
]

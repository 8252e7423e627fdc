"""Errors that describe bad input (a file, a record, a config value) rather than a bug, and the
one way every entry point reports them.

Every command (``hoi ...``, ``python -m data_prep.<stage>``) ends a user error with exactly one
line on stderr, ``error: <file>: <what is wrong> (expected <what>)``, and exit status 2; the
traceback only with ``--debug`` or ``HOI_DEBUG=1``. Errors raised in DataLoader worker processes
reach the main process wrapped in the worker's traceback; :func:`one_line` unwraps them so they
read the same as in the main process. Under torchrun every rank prints the line with its rank.
"""

from __future__ import annotations

import errno
import json
import os
import sys
import time
from collections.abc import Callable, Sequence

EXIT_USER_ERROR = 2
DEBUG_FLAG = "--debug"


class UserError(Exception):
    """Base class of errors caused by the user's input, with a message that says what to fix."""


class NonFiniteError(UserError, FloatingPointError):
    """Training produced a NaN or infinite value: one line naming where, and what to do."""


class DiskFullError(UserError, OSError):
    """Not enough free disk space for what a stage is about to write, or the disk filled up."""


def is_user_error(err: BaseException) -> bool:
    """Errors whose message is all the user needs: bad input, missing files, a full disk.

    ValueError counts (argument and value checks of numpy/h5py/our code); a ValueError or
    RuntimeError that carries a DataLoader worker's traceback counts when the original does.
    """
    if isinstance(err, (UserError, ValueError, FileNotFoundError)):
        return True
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return False


def one_line(err: BaseException) -> str:
    """The message of ``err`` as one line.

    An exception re-raised by a DataLoader from a worker carries ``Caught X in DataLoader worker
    process k. Original Traceback ...``; the line kept is the original exception's message.
    Multi-line messages (lists of differences) are joined with ``; ``.
    """
    text = str(err)
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC,
                                                  errno.EDQUOT) and not isinstance(err, UserError):
        where = f"{err.filename}: " if getattr(err, "filename", None) else ""
        text = (f"{where}no space left on the device ({err.strerror or err}); free some space and "
                f"rerun the same command: finished work is kept and the run resumes")
    if "Original Traceback" in text:
        lines = text.rstrip().splitlines()
        name = type(err).__name__
        for k in range(len(lines) - 1, -1, -1):
            head = lines[k].split(": ", 1)
            if (len(head) == 2 and head[0].rsplit(".", 1)[-1] == name
                    and not lines[k].startswith(" ")):
                text = "\n".join([head[1], *lines[k + 1:]])
                break
    parts = [p.strip() for p in text.splitlines() if p.strip()]
    if not parts:
        return type(err).__name__
    line = parts[0]
    for part in parts[1:]:  # "differences:\n  a\n  b" -> "differences: a; b"
        line += (" " if line.endswith(":") else "; ") + part
    return line


def debug_requested(argv: list[str]) -> bool:
    """Remove ``--debug`` from ``argv`` (anywhere) and say whether it, or HOI_DEBUG, asks for
    tracebacks."""
    found = DEBUG_FLAG in argv
    while DEBUG_FLAG in argv:
        argv.remove(DEBUG_FLAG)
    return found or os.environ.get("HOI_DEBUG", "") not in ("", "0")


def rank_prefix() -> str:
    """``rank k: `` under torchrun with several processes, else empty."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    return f"rank {os.environ.get('RANK', '?')}: " if world > 1 else ""


def report(err: BaseException, stream=None) -> int:
    """Print ``error: <message>`` (one line) and return the user-error exit status.

    A rank launched by :mod:`hoi.engine.torchrun` writes the line to torchrun's error file
    instead; the launcher prints each distinct message once."""
    message = one_line(err)
    error_file = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if error_file and os.environ.get("HOI_COLLECT_RANK_ERRORS"):
        try:
            with open(error_file, "w") as f:
                json.dump({"message": message, "timestamp": int(time.time())}, f)
            return EXIT_USER_ERROR
        except OSError:
            pass  # print it below instead
    print(f"{rank_prefix()}error: {message}", file=stream or sys.stderr, flush=True)
    return EXIT_USER_ERROR


def run_main(body: Callable[[list[str]], int | None], argv: Sequence[str] | None = None) -> int:
    """Run an entry point's ``body(argv)``; a user error becomes one line and exit status 2.

    ``--debug`` (anywhere in ``argv``) or ``HOI_DEBUG=1`` re-raises instead, with the traceback.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    debug = debug_requested(args)
    try:
        return int(body(args) or 0)
    except KeyboardInterrupt:
        print(f"{rank_prefix()}interrupted: finished work is kept; "
              "rerun the same command to resume",
              file=sys.stderr, flush=True)
        return 130
    except Exception as err:  # noqa: BLE001 - sorted below: user errors are one line, bugs are raised
        if debug or not is_user_error(err):
            raise
        return report(err)

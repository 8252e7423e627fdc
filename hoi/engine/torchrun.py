"""``python -m hoi.engine.torchrun [torchrun options] -m MODULE ...``: torchrun itself
(``torch.distributed.run``, unchanged), with the failures of user errors reported as one line.

Under it, a rank that stops on a user error (:mod:`hoi.errors`) writes its one-line message to
the error file torchrun gives every rank (``TORCHELASTIC_ERROR_FILE``) instead of printing it;
when ranks fail, the distinct messages are printed once, ``error: <message>`` (with the ranks
when several failed), and the exit status is 2. Any other failure keeps torchrun's own report.
The shell scripts of ``scripts/`` launch through it; plain ``torchrun`` works as well (each rank
then prints its own line, and torchrun adds its summary).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence

from hoi.errors import EXIT_USER_ERROR

COLLECT_ENV = "HOI_COLLECT_RANK_ERRORS"


def main(argv: Sequence[str] | None = None) -> int:
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    os.environ[COLLECT_ENV] = "1"  # inherited by every rank
    # the agent logs every failed rank at ERROR level with a traceback hint; the summary below says
    # it once
    logging.getLogger("torch.distributed.elastic.multiprocessing.api").setLevel(logging.CRITICAL)
    args = get_args_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        run(args)
    except ChildFailedError as err:
        # the first rank to fail is the cause; torchrun then stops the others (SIGTERM)
        _, first = err.get_first_failure()
        if first.exitcode != EXIT_USER_ERROR:
            raise
        by_message: dict[str, list[int]] = {}
        for rank, failure in sorted(err.failures.items()):
            if failure.exitcode == EXIT_USER_ERROR:
                by_message.setdefault(failure.message or "(no message)", []).append(rank)
        for message, ranks in by_message.items():
            where = f" (rank{'s' if len(ranks) > 1 else ''} {', '.join(map(str, ranks))})" \
                if len(err.failures) > 1 else ""
            print(f"error: {message}{where}", file=sys.stderr, flush=True)
        return EXIT_USER_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main())

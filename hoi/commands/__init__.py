"""Subcommands of the ``hoi`` command line (see :mod:`hoi.cli`)."""

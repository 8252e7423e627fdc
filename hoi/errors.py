"""Errors that describe bad input (a file, a record, a config value) rather than a bug.

The ``hoi`` command prints them as one clear message instead of a traceback; set
``HOI_DEBUG=1`` to get the traceback as well.
"""


class UserError(Exception):
    """Base class of errors caused by the user's input, with a message that says what to fix."""

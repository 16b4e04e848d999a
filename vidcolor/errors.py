"""The one exception type for problems a user can fix (bad input, bad options, unwritable output).

The CLI catches it and prints its message as a single line; anything else is a bug.
"""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class VidcolorError(Exception):
    pass


def one_line(text: str) -> str:
    """Make a message safe to print as one line.

    File names may hold newlines or bytes that are not UTF-8 (kept by Python as surrogate
    escapes): both are shown as backslash escapes, so one error is always one line.
    """
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)

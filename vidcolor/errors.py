"""The one exception type for problems a user can fix (bad input, bad options, unwritable output).

The CLI catches it and prints its message as a single line; anything else is a bug.
"""

from __future__ import annotations

import re

# Control characters, and the bidirectional overrides that can make a name read backwards.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f\u202a-\u202e\u2066-\u2069]")


class VidcolorError(Exception):
    pass


def one_line(text: str) -> str:
    """Make a message safe to print as one line.

    File names may hold newlines, bidirectional overrides or bytes that are not UTF-8 (kept by
    Python as surrogate escapes): all are shown as backslash escapes, so one error is always
    one line and reads as it is.

    Idempotent (messages often embed names already made safe), so backslashes themselves are
    left as they are.
    """
    text = _UNSAFE.sub(_escape, text)
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _escape(match: re.Match[str]) -> str:
    return match.group().encode("unicode_escape").decode("ascii")

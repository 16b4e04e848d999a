"""The one exception type for problems a user can fix (bad input, bad options, unwritable output).

The CLI catches it and prints its message as a single line; anything else is a bug.
"""


class VidcolorError(Exception):
    pass

"""Text values (person ids) as numbers, so that a page of them can be read by windows of values that widen, as
id_windows.py reads faces by windows of ids. Pure.

A number of DIGITS base-128 digits stands for the ASCII text of those characters (trailing NULs dropped): the
texts of increasing numbers increase, in the order MongoDB compares strings (UTF-8 bytes, the code points'
order). Every text t lies between text_of(key_of(t)) (included) and text_of(key_of(t) + 1) (excluded, and
unbounded past the last number): a window [text_of(a), text_of(b)) holds exactly the texts whose keys are in
[a, b). Windows' bounds are ASCII whatever the texts are: non-ASCII sorts after every ASCII character.
"""
from __future__ import annotations

BASE = 128
DIGITS = 8
END = BASE ** DIGITS  # past the last key: the window reaching it has no upper bound


def key_of(text: str) -> int:
    """The largest key whose text is <= `text`."""
    key = 0
    for i in range(DIGITS):
        if i >= len(text):
            return key * BASE ** (DIGITS - i)
        code = ord(text[i])
        if code >= BASE:  # above every text with an ASCII character here and this prefix
            return (key + 1) * BASE ** (DIGITS - i) - 1
        key = key * BASE + code
    return key


def text_of(key: int) -> str:
    digits = []
    for _ in range(DIGITS):
        key, digit = divmod(key, BASE)
        digits.append(chr(digit))
    return "".join(reversed(digits)).rstrip("\0")

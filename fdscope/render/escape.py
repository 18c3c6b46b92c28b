"""Target text made safe for a terminal and a table: the one escape function of text output.

Process names, command lines, file names and socket paths come from the target, and a target
can put anything in them: `\\e]0;TITLE\\a` sets the terminal's title, `\\e[2J` clears the screen, a
newline splits a table row (and can forge one), and bytes that are not UTF-8 (fdscope.proc
decodes with surrogateescape) cannot even be written to a strict UTF-8 stdout. As `ls -b` and
lsof do, such characters are shown as visible escapes:

- newline and tab as `\\n` and `\\t`;
- every other C0 control, DEL and the C1 controls (U+0080..U+009F) as `\\xNN`;
- a byte that is not UTF-8 (surrogateescape'd to U+DC80..U+DCFF) as `\\xNN`, the byte itself;
- line and paragraph separators (U+2028, U+2029: str.splitlines() breaks table cells there) and
  the bidirectional controls that reorder what a terminal shows ("Trojan Source",
  CVE-2021-42574), and any other lone surrogate, as `\\uNNNN`.

A backslash is left as it is (as lsof does): the escapes are for reading, JSON output keeps every
string exact.
"""

from __future__ import annotations

import re

_NAMED = {"\n": "\\n", "\t": "\\t"}
_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff]"
)


def _one(match: re.Match[str]) -> str:
    ch = match.group()
    code = ord(ch)
    if ch in _NAMED:
        return _NAMED[ch]
    if code < 0xA0:
        return f"\\x{code:02x}"
    if 0xDC80 <= code <= 0xDCFF:  # a byte that is not UTF-8, as surrogateescape keeps it
        return f"\\x{code - 0xDC00:02x}"
    return f"\\u{code:04x}"


def escape(text: str) -> str:
    """`text` with every unsafe character replaced by a visible escape (module docstring)."""
    # Fast path: isprintable() is False for every character escaped here (and a few more,
    # such as a no-break space, which the substitution then leaves alone).
    if text.isprintable():
        return text
    return _UNSAFE.sub(_one, text)


"""The first sorting of a whole fd table by its /proc/PID/fd link texts (fdscope.parse.fdlink
classifies one link fully). Imports nothing: the host read-ahead uses it before click loads."""

from __future__ import annotations

# link_kinds' codes: socket, pipe, path, anon_inode, any other text, a failed read (None).
KIND_SOCKET, KIND_PIPE, KIND_PATH, KIND_ANON, KIND_OTHER, KIND_NONE = b"sp/a?-"


def link_kinds(texts: list[str | None]) -> tuple[bytes, list[int]]:
    """One kind byte per link text (KIND_*) and the inode a "socket:[INO]" or "pipe:[INO]"
    text names (0 for the others): the first sorting of a whole fd table, without a Python
    object per fd in the C twin. INO is 1 to 19 ASCII digits; a text outside that form is
    KIND_OTHER, for classify_fd to decide."""
    kinds = bytearray(len(texts))
    inodes = [0] * len(texts)
    for i, text in enumerate(texts):
        if text is None:
            kinds[i] = KIND_NONE
            continue
        for prefix, kind in (("socket:[", KIND_SOCKET), ("pipe:[", KIND_PIPE)):
            digits = text[len(prefix):-1]
            if (text.startswith(prefix) and text.endswith("]") and 0 < len(digits) <= 19
                    and digits.isascii() and digits.isdigit()):
                kinds[i] = kind
                inodes[i] = int(digits)
                break
        else:
            kinds[i] = (KIND_PATH if text.startswith("/") else
                        KIND_ANON if text.startswith("anon_inode:") else KIND_OTHER)
    return bytes(kinds), inodes

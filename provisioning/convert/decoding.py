"""The text encoding of an export, sniffed from its first bytes, and the error of a byte that
does not decode (UTF-8 with or without BOM, or UTF-16 with BOM)."""

from __future__ import annotations

import codecs

from .rows import FileError


def sniff_encoding(head: bytes) -> str:
    if head.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        raise FileError("the file is UTF-32; export it as UTF-8 or UTF-16 with BOM")
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    # ASCII text in UTF-16 has a zero in every other byte; UTF-8 text practically never does.
    if len(head) == 4 and (head[1] == head[3] == 0 or head[0] == head[2] == 0):
        raise FileError(
            "the file looks like UTF-16 without a byte order mark; "
            "export it as UTF-8 or UTF-16 with BOM"
        )
    # utf-8-sig reads plain UTF-8 too, and drops a BOM that would otherwise stick to column one.
    return "utf-8-sig"


def decode_reason(encoding: str, exc: UnicodeDecodeError) -> str:
    label = "UTF-16" if encoding == "utf-16" else "UTF-8"
    return (
        f"the file is not valid {label} ({exc.reason}); "
        "export it as UTF-8 (with or without BOM) or UTF-16 with BOM"
    )


def decode_error(encoding: str, exc: UnicodeDecodeError, lines_read: int) -> FileError:
    """FileError on the line of the byte that does not decode.

    The text layer decodes a chunk ahead of the reader; when a chunk fails, ``lines_read`` whole
    lines have been handed out and ``exc.object[:exc.start]`` is what the chunk holds before
    the bad byte (the line being read continues into it).
    """
    before = exc.object[: exc.start].decode(exc.encoding, errors="replace")
    ends = before.count("\n") + before.count("\r") - before.count("\r\n")
    return FileError(decode_reason(encoding, exc), lines_read + 1 + ends)

"""Text from a peer made safe for a log line: control characters written as RFC 4514 hex escapes.

A client certificate's subject and issuer are the peer's own bytes, and gtls logs them when it refuses the client
(any client can present a self-signed certificate with ``CN=x\\nhandshake failed: …`` or a terminal escape): written
as they are, they forged log lines or repainted an operator's terminal. Such characters are written as RFC 4514 §2.4
hex pairs of their UTF-8 bytes (``\\0A``), the escape ``cryptography`` already uses for NUL (``\\00``): a subject
stays one line and still reads as an RFC 4514 string. Escaped: C0 and C1 controls, DEL, the Unicode line and
paragraph separators, and the bidirectional controls that reorder how a line is displayed (gtls decision).
"""

from __future__ import annotations

import re
from typing import Final

_UNPRINTABLE: Final = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u2028-\u202e\u2066-\u2069]")


def _hex(match: re.Match[str]) -> str:
    return "".join(f"\\{byte:02X}" for byte in match.group().encode("utf-8"))


def printable(text: str) -> str:
    """``text`` with control characters as ``\\XX`` escapes of their UTF-8 bytes (unchanged when it has none)."""
    return _UNPRINTABLE.sub(_hex, text)

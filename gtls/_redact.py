"""Keeping key material out of messages: PEM blocks, and base64 that looks like a key pasted without its header.

gtls never prints a private key, but values users give appear in errors, warnings, logs and ``gtls check``: a key
pasted where a path, name or number belongs would be echoed back. ``redact`` is applied where text leaves gtls
(``ConfigError`` messages, the warnings it logs or prints, every line of the command line). It replaces

* a PEM block, from ``-----BEGIN`` to its ``-----END …-----`` line (without one, to the end of the line or the
  quoted string it is in: the body's lines are then caught as base64), and
* a base64 run that looks like key material: at least 32 characters of the base64 alphabet (a PEM body line has
  64) whose letters and digits switch between upper case, lower case and digits about every other character and
  never stay lower case for long, as random bytes encoded do; with the runs of 16 or more characters joined to it
  by line breaks, spaces, colons or commas (the rest of the body, as a value split into lines or into a cipher list
  shows it). A whole body is caught with certainty for practical purposes (any of its lines will do); one line of 64
  random characters alone, 998 times in 1,000; the first line of a key is mostly its fixed ASN.1 header, which
  tells nothing and is not caught alone.

File paths and words do not look like that, however long, even in CamelCase: their lower-case stretches are words
(``/Users/JohnDoe/AppData/Roaming/Certs2024``), so a path in a message stays readable. Decided for gtls; the spec
is silent.
"""

from __future__ import annotations

import re
from typing import Final

PEM_MARK: Final = "-----BEGIN"
_PEM_BLOCK: Final = re.compile(r"-----BEGIN[^-]{0,64}-----.*?-----END[^-]{0,64}-----", re.DOTALL)
_PEM_START: Final = re.compile(r"-----BEGIN[^\n\"']*")
#: Runs of base64 of 16 characters or more, joined by line breaks (real or escaped, as in a repr), spaces, colons
#: or commas (a message listing a cipher list's tokens joins them with ", ").
_BASE64_BLOB: Final = re.compile(r"[A-Za-z0-9+/]{16,}={0,2}(?:(?:\s|\\n|\\r|:|,)+[A-Za-z0-9+/]{16,}={0,2})*")
_BASE64_RUN: Final = re.compile(r"[A-Za-z0-9+/]{32,}")
#: A run must change character class (upper, lower, digit) at least this often between neighbouring letters and
#: digits (random base64: 0.62), and its stretches of lower-case letters be this short on average (random: 1.7).
_MIN_CHANGE_RATE: Final = 0.35
_MAX_MEAN_LOWER_RUN: Final = 2.8
_LOWER_RUN: Final = re.compile(r"[a-z]+")
PEM_SHOWN: Final = "[PEM content not shown]"
BASE64_SHOWN: Final = "[base64 not shown: it may be key material]"


def _class(char: str) -> int:
    return 0 if char.isupper() else 1 if char.islower() else 2 if char.isdigit() else 3


def _key_like(run: str) -> bool:
    if not (any(c.isdigit() for c in run) and any(c.isupper() for c in run) and any(c.islower() for c in run)):
        return False
    # Letters and digits only: a path's separators would count as changes, and base64's own '/' and '+' say nothing.
    chars = [c for c in run if c.isalnum()]
    changes = sum(1 for a, b in zip(chars, chars[1:], strict=False) if _class(a) != _class(b))
    if changes < _MIN_CHANGE_RATE * (len(chars) - 1):
        return False
    # CamelCase words change class often too, but their lower-case stretches are long ("Users", "Data").
    lower = _LOWER_RUN.findall(run)
    return sum(map(len, lower)) <= _MAX_MEAN_LOWER_RUN * len(lower)


def _blob(match: re.Match[str]) -> str:
    blob = match.group()
    return BASE64_SHOWN if any(_key_like(run.group()) for run in _BASE64_RUN.finditer(blob)) else blob


#: Characters that change how a line reads rather than what it says: C0 and C1 controls (newlines, escape sequences
#: that recolour or retitle a terminal, a backspace that hides what came before), DEL, the line and paragraph
#: separators, and the bidirectional overrides and isolates that reorder text on screen.
_CONTROLS: Final = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def escape_controls(text: str) -> str:
    """``text`` with control characters written as Python escapes (``\\n``, ``\\x1b``, ``\\u202e``): what a peer
    put in its certificate's names reaches messages, log lines and the terminal as text, never as a line break or an
    escape sequence. Idempotent (backslashes are left as they are)."""
    if _CONTROLS.search(text) is None:
        return text
    return _CONTROLS.sub(lambda match: match.group().encode("unicode_escape").decode("ascii"), text)


def holds_key_material(text: str) -> bool:
    """Whether ``redact`` would hide something in ``text``."""
    return redact(text) != text


def redact(text: str) -> str:
    """``text`` with PEM blocks and key-like base64 replaced by a note saying what was left out."""
    if PEM_MARK in text:
        text = _PEM_START.sub(PEM_SHOWN, _PEM_BLOCK.sub(PEM_SHOWN, text))
    if len(text) < 32:
        return text
    return _BASE64_BLOB.sub(_blob, text)

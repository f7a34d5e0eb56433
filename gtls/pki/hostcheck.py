"""The peer-name and verify-code services of OpenSSL that gtls uses (``gtls._binding``'s VERIFY group).

OpenSSL is given the reference name so the peer-name check runs inside certificate verification (no Python callback
per certificate); a failed handshake's verify code and text are read back; the offline verifier pins host, purpose
and time. The private pyOpenSSL calls behind this live in ``gtls._binding``. When they disappear, ``AVAILABLE`` is
false and callers check the name with ``names.py`` right after the handshake instead (``context.established``).
"""

from __future__ import annotations

from .. import _binding
from .._binding import error_text, pin_store, set_reference_name, verify_result
from . import reasons

REQUIRED_SYMBOLS = _binding.VERIFY_SYMBOLS
AVAILABLE: bool = _binding.VERIFY


def missing_symbols() -> list[str]:
    """Symbols of ``REQUIRED_SYMBOLS`` the installed binding lacks (all of them when the binding is gone)."""
    return [name for name in _binding.missing_symbols() if name in REQUIRED_SYMBOLS or "/" in name]


def verify_message(code: int) -> str:
    """The message of a verify failure: OpenSSL's text, with its code when gtls has no reason word of its own."""
    text = error_text(code)
    return text if reasons.is_known(code) else f"OpenSSL verify error {code}: {text}"


__all__ = ["AVAILABLE", "REQUIRED_SYMBOLS", "error_text", "missing_symbols", "pin_store", "set_reference_name",
           "verify_message", "verify_result"]

"""The only module touching pyOpenSSL's private binding (``OpenSSL._util.lib`` / ``ffi``).

It gives OpenSSL the reference name so the peer-name check runs inside certificate verification (no Python callback
per certificate), reads the verify result of a connection, and pins host, purpose and time for the offline verifier.
When a symbol disappears in a future pyOpenSSL, ``AVAILABLE`` turns false and callers use ``names.py`` after the
handshake instead; tests/test_pki_hostcheck.py fails loudly naming the missing symbols.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from OpenSSL import SSL, crypto

REQUIRED_SYMBOLS = (
    "SSL_get0_param",
    "X509_VERIFY_PARAM_new",
    "X509_VERIFY_PARAM_free",
    "X509_VERIFY_PARAM_set1_host",
    "X509_VERIFY_PARAM_set_hostflags",
    "X509_VERIFY_PARAM_set_time",
    "X509_CHECK_FLAG_NO_WILDCARDS",
    "X509_STORE_set1_param",
    "X509_STORE_set_purpose",
    "X509_PURPOSE_SSL_SERVER",
    "X509_PURPOSE_SSL_CLIENT",
    "SSL_get_verify_result",
    "X509_verify_cert_error_string",
)

try:
    from OpenSSL._util import ffi as _ffi
    from OpenSSL._util import lib as _lib
except ImportError:  # pragma: no cover - depends on the installed pyOpenSSL
    _lib = None
    _ffi = None


def missing_symbols() -> list[str]:
    """Symbols of ``REQUIRED_SYMBOLS`` the installed binding lacks (all of them when the module is gone)."""
    if _lib is None:
        return list(REQUIRED_SYMBOLS)
    return [name for name in REQUIRED_SYMBOLS if not hasattr(_lib, name)]


AVAILABLE = not missing_symbols()


def _ssl_ptr(conn: SSL.Connection) -> Any:
    return conn._ssl  # noqa: SLF001 - private by design, see module docstring


def _store_ptr(store: crypto.X509Store) -> Any:
    return store._store  # noqa: SLF001


def _set_host(param: Any, reference: str) -> None:
    assert _lib is not None
    raw = reference.encode("ascii")
    if _lib.X509_VERIFY_PARAM_set1_host(param, raw, len(raw)) != 1:
        raise ValueError(f"OpenSSL refused the reference name {reference!r}")
    _lib.X509_VERIFY_PARAM_set_hostflags(param, _lib.X509_CHECK_FLAG_NO_WILDCARDS)


def set_reference_name(conn: SSL.Connection, reference: str) -> None:
    """Make OpenSSL check the server certificate against ``reference`` (normalised) during the handshake.

    A mismatch becomes ``X509_V_ERR_HOSTNAME_MISMATCH``: the client aborts with a fatal alert."""
    assert _lib is not None
    _set_host(_lib.SSL_get0_param(_ssl_ptr(conn)), reference)


def verify_result(conn: SSL.Connection) -> int:
    """``SSL_get_verify_result``: the X509_V_ERR code of the peer verification (0 when it passed or did not run)."""
    if _lib is None:
        return 0
    return int(_lib.SSL_get_verify_result(_ssl_ptr(conn)))


def error_text(code: int) -> str:
    """OpenSSL's text for a verify code."""
    if _lib is None or _ffi is None:
        return f"verify error {code}"
    return str(_ffi.string(_lib.X509_verify_cert_error_string(code)).decode("ascii", "replace"))


def pin_store(store: crypto.X509Store, *, purpose: str, reference: str | None, at: dt.datetime | None) -> None:
    """Set the purpose (``"ssl_server"`` or ``"ssl_client"``), reference name and validation time of ``store``,
    as a handshake on the matching role would use them."""
    assert _lib is not None
    ptr = _store_ptr(store)
    code = _lib.X509_PURPOSE_SSL_SERVER if purpose == "ssl_server" else _lib.X509_PURPOSE_SSL_CLIENT
    _lib.X509_STORE_set_purpose(ptr, code)
    param = _lib.X509_VERIFY_PARAM_new()
    try:
        if reference is not None:
            _set_host(param, reference)
        if at is not None:
            _lib.X509_VERIFY_PARAM_set_time(param, int(at.timestamp()))
        _lib.X509_STORE_set1_param(ptr, param)
    finally:
        _lib.X509_VERIFY_PARAM_free(param)

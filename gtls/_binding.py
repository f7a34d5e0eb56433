"""The one module that uses pyOpenSSL's private API; everything else in gtls calls it or pyOpenSSL's public API.

What gtls takes from pyOpenSSL's internals (its cffi binding ``OpenSSL._util.lib``/``ffi``, the ``Connection._ssl``
and ``X509Store._store`` pointers, ``Connection._raise_ssl_error`` and ``_util.no_zero_allocator``), grouped by use,
and what happens without it. ``missing_symbols()`` names whatever is gone; tests/test_binding.py fails loudly with
that list, and also runs the fallbacks to show they give the same results.

ENGINE (``gtls.engine``, the per-record hot path): ``SSL_do_handshake``/``SSL_read``/``SSL_write``/``SSL_shutdown``
+ ``SSL_get_error`` called directly — one C call per step and no exception for WANT_READ/WANT_WRITE — and
``_raise_ssl_error`` to build pyOpenSSL's exception when a step really failed; ``SSL_session_reused``;
``ERR_clear_error`` before each step (the error queue is per thread, and SSL_get_error needs it empty).
Fallback: pyOpenSSL's public ``do_handshake``/``recv``/``send``/``shutdown`` (same outcomes, a few Python calls and
one exception per WANT_*), and ``ReuseTracker`` (an info callback noting whether a certificate crossed the wire)
for resumption. ``SSL_set_options`` on ``Connection._ssl`` for an https-compatible stream's
``SSL_OP_IGNORE_UNEXPECTED_EOF``, only on pyOpenSSL before 26 (which has no public ``Connection.set_options``);
fallback: OpenSSL's default, a fatal error on an EOF without close_notify (``ignore_unexpected_eof``).

VERIFY (``gtls.pki.hostcheck``): ``X509_VERIFY_PARAM_set1_host`` so OpenSSL checks the peer name during
verification; ``SSL_get_verify_result`` and ``X509_verify_cert_error_string`` for the reason of a failure;
``X509_STORE_set_purpose``/``set1_param`` to pin purpose, host and time for the offline verifier; ``d2i_X509_CRL_bio``
and ``X509_STORE_add_crl`` so its stores share CRLs converted once (pyOpenSSL's ``add_crl`` converts per store).
Fallback: ``names.py`` checks the name right after the handshake (``context.established``); the verify code comes
from re-verifying the peer's chain against the context's own store (public ``X509StoreContext``; purpose is not
pinned there, so a purpose-only failure reads as code 1, ``untrusted``); texts read ``OpenSSL verify error N``.

SESSIONS (``gtls._sessions``): ``SSL_CTX_set_session_id_context`` on the ``Context._context`` pointer, to start a new
session epoch on a context already in use (pyOpenSSL's ``set_session_id`` refuses a context that made a connection).
Fallback: ports that verify clients resume no sessions at all (no cache, no tickets), so a resumption never skips
a certificate check for longer than the epochs would allow.

DETOUR (``gtls._detour``): ``SSL_set_bio`` with two ``BIO_s_mem`` BIOs (``BIO_write``, ``BIO_read``,
``BIO_get_mem_data``, ``BIO_set_mem_eof_return``) in place of a socket-bound connection's socket BIO while a read
must run beside a write OpenSSL still holds, and ``SSL_set_fd`` to bind the socket again. Fallback: none; such a
read then runs as before, and a TLS 1.3 KeyUpdate asking for ours arriving just then fails the connection
("bad length").

TRUST STORE (``gtls.pki.system_trust``): ``X509_get_default_cert_file``/``X509_get_default_cert_dir``, the CA file
and folder compiled into the OpenSSL gtls runs on (cryptography's, not the one under Python's ``ssl``), and pyOpenSSL's
``_CRYPTOGRAPHY_MANYLINUX_CA_*``/``_CERTIFICATE_*_LOCATIONS``, the system paths its ``set_default_verify_paths``
falls back to on cryptography's wheels, so profile windows reads what that call read. Fallback: the defaults of the
OpenSSL under Python's ``ssl``, and no wheel fallback.

OBJECT NAMES (``gtls._ssl_compat``, ``TLSStream.getpeercert()``): ``OBJ_txt2nid``/``OBJ_nid2ln``/``OBJ_nid2sn`` name
an OID as Python's ``ssl`` names it (OpenSSL's long name; this OpenSSL's, which may know an OID the one under ``ssl``
does not). Fallback: a table of the name attributes OpenSSL knows; other OIDs stay dotted.
"""

from __future__ import annotations

import datetime as dt
import ssl
from collections.abc import Callable, Sequence
from typing import Any, Final, NoReturn

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL, crypto

ENGINE_SYMBOLS: Final = (
    "SSL_do_handshake",
    "SSL_read",
    "SSL_write",
    "SSL_shutdown",
    "SSL_get_error",
    "SSL_ERROR_WANT_READ",
    "SSL_ERROR_WANT_WRITE",
    "SSL_ERROR_ZERO_RETURN",
    "SSL_session_reused",
    "ERR_clear_error",
)
VERIFY_SYMBOLS: Final = (
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
    "BIO_new_mem_buf",
    "BIO_free",
    "d2i_X509_CRL_bio",
    "X509_CRL_free",
    "X509_STORE_add_crl",
)
SESSION_SYMBOLS: Final = ("SSL_CTX_set_session_id_context",)
DETOUR_SYMBOLS: Final = (
    "BIO_new", "BIO_s_mem", "BIO_read", "BIO_write", "BIO_get_mem_data", "BIO_set_mem_eof_return", "SSL_set_bio",
    "SSL_set_fd",
)
OBJECT_NAME_SYMBOLS: Final = ("OBJ_txt2nid", "OBJ_nid2ln", "OBJ_nid2sn", "NID_undef")
TRUST_STORE_SYMBOLS: Final = ("X509_get_default_cert_file", "X509_get_default_cert_dir")

_lib: Any
_ffi: Any
_alloc: Any
try:
    from OpenSSL._util import ffi as _ffi
    from OpenSSL._util import lib as _lib
    from OpenSSL._util import no_zero_allocator as _alloc
except ImportError:  # pragma: no cover - depends on the installed pyOpenSSL
    _lib = _ffi = _alloc = None


def _instance_attributes() -> list[str]:
    """The private instance attributes gtls reads, checked on real objects (they are set in ``__init__``)."""
    missing = []
    conn = SSL.Connection(SSL.Context(SSL.TLS_METHOD), None)
    if not hasattr(conn, "_ssl"):
        missing.append("Connection._ssl")
    if not callable(getattr(conn, "_raise_ssl_error", None)):
        missing.append("Connection._raise_ssl_error")
    if not hasattr(crypto.X509Store(), "_store"):
        missing.append("X509Store._store")
    if not hasattr(SSL.Context(SSL.TLS_METHOD), "_context"):
        missing.append("Context._context")
    return missing


def _missing_in_binding(names: tuple[str, ...]) -> list[str]:
    if _lib is None or _ffi is None:
        return ["OpenSSL._util.lib/ffi", *names]
    return [name for name in names if not hasattr(_lib, name)]


def missing_symbols() -> list[str]:
    """Everything gtls uses that the installed pyOpenSSL lacks, by name (empty when all is there)."""
    missing = _missing_in_binding(
        ENGINE_SYMBOLS + VERIFY_SYMBOLS + SESSION_SYMBOLS + DETOUR_SYMBOLS + OBJECT_NAME_SYMBOLS + TRUST_STORE_SYMBOLS)
    if _alloc is None:
        missing.append("OpenSSL._util.no_zero_allocator")
    return missing + _instance_attributes()


#: The engine's direct path is usable (read at connection setup, so a test can switch it off). ``Connection._ssl``
#: is an instance attribute: ``ssl_pointer`` checks it per connection instead of building one here.
ENGINE: bool = (
    not _missing_in_binding(ENGINE_SYMBOLS)
    and _alloc is not None
    and callable(getattr(SSL.Connection, "_raise_ssl_error", None))
)
#: OpenSSL checks the peer name itself and reports verify codes.
VERIFY: bool = not _missing_in_binding(VERIFY_SYMBOLS)
#: A context in use can start a new session epoch.
SESSIONS: bool = not _missing_in_binding(SESSION_SYMBOLS) and hasattr(SSL.Context(SSL.TLS_METHOD), "_context")
#: OpenSSL's own names for OIDs.
OBJECT_NAMES: bool = not _missing_in_binding(OBJECT_NAME_SYMBOLS)
#: The default CA locations of the OpenSSL pyOpenSSL runs on are known.
TRUST_STORE: bool = not _missing_in_binding(TRUST_STORE_SYMBOLS)
#: A socket-bound connection can move its I/O to memory BIOs and back.
DETOUR: bool = ENGINE and not _missing_in_binding(DETOUR_SYMBOLS)

# --- ENGINE ------------------------------------------------------------------------------------------------------

#: OpenSSL's SSL_ERROR_WANT_READ / SSL_ERROR_WANT_WRITE (stable ABI values, used when the binding is gone).
ERROR_WANT_READ: Final[int] = _lib.SSL_ERROR_WANT_READ if ENGINE else 2
ERROR_WANT_WRITE: Final[int] = _lib.SSL_ERROR_WANT_WRITE if ENGINE else 3
#: SSL_ERROR_ZERO_RETURN: the peer's close_notify arrived (no exception needs building for it).
ERROR_ZERO_RETURN: Final[int] = _lib.SSL_ERROR_ZERO_RETURN if ENGINE else 6
# The C functions themselves, bound once: each step is one call, no attribute lookups.
SSL_do_handshake: Callable[[Any], int] = _lib.SSL_do_handshake if ENGINE else None  # type: ignore[assignment]
SSL_read: Callable[[Any, Any, int], int] = _lib.SSL_read if ENGINE else None  # type: ignore[assignment]
SSL_write: Callable[[Any, Any, int], int] = _lib.SSL_write if ENGINE else None  # type: ignore[assignment]
SSL_shutdown: Callable[[Any], int] = _lib.SSL_shutdown if ENGINE else None  # type: ignore[assignment]
SSL_get_error: Callable[[Any, int], int] = _lib.SSL_get_error if ENGINE else None  # type: ignore[assignment]


def _keep_queue() -> None:  # pragma: no cover - only without the binding
    """Without the binding, pyOpenSSL's public methods run each step and read their own errors."""


#: Empties this thread's OpenSSL error queue (~0.1 µs). OpenSSL's SSL_get_error is only reliable on an empty queue,
#: and the queue is per thread, not per connection: pyOpenSSL raises SysCallError for EPIPE/ECONNRESET without
#: taking the entry off, so one peer's reset would otherwise misreport the next step of every other connection in
#: the thread (as CPython's ssl module does, gtls clears it before each step).
clear_errors: Callable[[], None] = _lib.ERR_clear_error if ENGINE else _keep_queue


def stop_auto_retry(ssl: Any) -> None:
    """Have ``SSL_read`` and ``SSL_do_handshake`` return ``WANT_READ`` after a record that carried no application data
    (a session ticket, a HelloRequest, a warning alert) instead of reading on (``SSL_MODE_AUTO_RETRY`` cleared). For a
    socket the caller waits on level-triggered (its read is retried at once if more is there); a no-op without
    ``SSL_clear_mode`` in the binding."""
    if _lib is not None and hasattr(_lib, "SSL_clear_mode") and hasattr(_lib, "SSL_MODE_AUTO_RETRY"):
        _lib.SSL_clear_mode(ssl, _lib.SSL_MODE_AUTO_RETRY)


def ssl_pointer(conn: SSL.Connection) -> Any:
    """The connection's ``SSL *`` for the direct path, or None to use pyOpenSSL's public methods."""
    return getattr(conn, "_ssl", None) if ENGINE else None


def raise_ssl_error(conn: SSL.Connection, ssl: Any, result: int) -> NoReturn:
    """Raise the ``SSL.Error`` pyOpenSSL's public method would have raised for this failed step."""
    conn._raise_ssl_error(ssl, result)  # noqa: SLF001
    raise SSL.SysCallError(-1, "Unexpected EOF")  # pragma: no cover - OpenSSL reported no error for the step


def ignore_unexpected_eof(conn: SSL.Connection) -> None:
    """Have OpenSSL take an EOF without close_notify on ``conn`` for the end of the peer's data, as a close_notify
    (``SSL_OP_IGNORE_UNEXPECTED_EOF``), instead of a fatal error that sends the peer a ``decode_error`` alert and
    fails every later write. pyOpenSSL's public ``Connection.set_options`` where it has one (26 and later), else
    the binding's ``SSL_set_options``; without either, OpenSSL's default stays."""
    option = getattr(SSL, "OP_IGNORE_UNEXPECTED_EOF", 0)
    set_options = getattr(conn, "set_options", None)
    if set_options is not None:
        set_options(option)
    elif _lib is not None and hasattr(_lib, "SSL_set_options") and hasattr(conn, "_ssl"):  # pragma: no cover
        _lib.SSL_set_options(conn._ssl, option)  # noqa: SLF001 - pyOpenSSL 25: no public per-connection options


def read_buffer(size: int) -> Any:
    """An uninitialised ``char[size]`` for ``SSL_read``."""
    return _alloc("char[]", size)


def buffer_bytes(buf: Any, size: int) -> bytes:
    data: bytes = _ffi.buffer(buf, size)[:]
    return data


def write_buffer(data: bytes | bytearray | memoryview) -> Any:
    """A context manager giving ``data`` as ``char *`` without a copy (``ffi.from_buffer``)."""
    return _ffi.from_buffer(data)


# --- DETOUR ------------------------------------------------------------------------------------------------------


def bind_memory(ssl: Any) -> tuple[Any, Any]:
    """Put two new memory BIOs in place of ``ssl``'s socket BIO (which is freed; the socket stays open): returns
    (in, out). OpenSSL owns them: they go with the connection, or with the BIO that replaces them."""
    into = _lib.BIO_new(_lib.BIO_s_mem())
    out = _lib.BIO_new(_lib.BIO_s_mem())
    if into == _ffi.NULL or out == _ffi.NULL:  # pragma: no cover - out of memory
        raise MemoryError("cannot allocate a memory BIO")
    _lib.SSL_set_bio(ssl, into, out)
    return into, out


def bind_socket(ssl: Any, fd: int) -> bool:
    """Bind ``ssl`` to the socket ``fd`` again (the memory BIOs are freed); False if OpenSSL could not."""
    if _lib.SSL_set_fd(ssl, fd) == 1:
        return True
    _lib.ERR_clear_error()
    return False


def bio_feed(bio: Any, data: bytes) -> None:
    """Hand ``data`` to OpenSSL through the memory BIO ``bio`` (it takes all of it)."""
    _lib.BIO_write(bio, data, len(data))


def bio_eof(bio: Any) -> None:
    """The memory BIO ``bio`` reads as end of file once empty (the socket under it reached EOF)."""
    _lib.BIO_set_mem_eof_return(bio, 0)


def bio_pending(bio: Any) -> int:
    """How many bytes the memory BIO ``bio`` holds."""
    return int(_lib.BIO_get_mem_data(bio, _ffi.NULL))


def bio_take(bio: Any) -> bytes:
    """Everything the memory BIO ``bio`` holds (``b""`` when empty)."""
    size = bio_pending(bio)
    if not size:
        return b""
    buf = _alloc("char[]", size)
    got = _lib.BIO_read(bio, buf, size)
    return _ffi.buffer(buf, got)[:] if got > 0 else b""


def session_reused(conn: SSL.Connection) -> bool:
    """Whether the finished handshake resumed a session (``SSL_session_reused``); needs ``ENGINE``."""
    return bool(_lib.SSL_session_reused(conn._ssl))  # noqa: SLF001


class ReuseTracker:
    """Public-API stand-in for ``SSL_session_reused``: a full handshake sends or reads a certificate, a resumed one
    (TLS 1.2 session id/ticket, TLS 1.3 PSK) does not. Costs one Python call per handshake state, so only
    connections on the fallback path install it."""

    __slots__ = ("full",)

    def __init__(self, conn: SSL.Connection) -> None:
        self.full = False
        conn.set_info_callback(self._on_state)

    def _on_state(self, conn: SSL.Connection, where: int, _ret: int) -> None:
        if not self.full and where & SSL.SSL_CB_LOOP and b"certificate" in conn.get_state_string():
            self.full = True


# --- VERIFY ------------------------------------------------------------------------------------------------------


def _set_host(param: Any, reference: str) -> None:
    raw = reference.encode("ascii")
    if _lib.X509_VERIFY_PARAM_set1_host(param, raw, len(raw)) != 1:
        raise ValueError(f"OpenSSL refused the reference name {reference!r}")
    _lib.X509_VERIFY_PARAM_set_hostflags(param, _lib.X509_CHECK_FLAG_NO_WILDCARDS)


def set_reference_name(conn: SSL.Connection, reference: str) -> None:
    """Make OpenSSL check the server certificate against ``reference`` during the handshake (needs ``VERIFY``);
    a mismatch becomes ``X509_V_ERR_HOSTNAME_MISMATCH`` and the client aborts with a fatal alert."""
    _set_host(_lib.SSL_get0_param(conn._ssl), reference)  # noqa: SLF001


def verify_result(conn: SSL.Connection) -> int:
    """The X509_V_ERR code of the peer verification of a failed handshake (0: it passed or did not run)."""
    if VERIFY:
        return int(_lib.SSL_get_verify_result(conn._ssl))  # noqa: SLF001
    return _reverify(conn)


def _reverify(conn: SSL.Connection) -> int:
    """The fallback: verify the chain the peer sent against the context's store, as the handshake did."""
    # A failed verification leaves the leaf only in the chain (leaf first, whatever the role); the untrusted
    # list may hold the leaf again, which is harmless.
    chain = conn.get_peer_cert_chain() or []
    leaf = conn.get_peer_certificate() or (chain[0] if chain else None)
    if leaf is None:
        return 0
    store = conn.get_context().get_cert_store()
    if store is None:  # pragma: no cover - every context has a store
        return 0
    try:
        crypto.X509StoreContext(store, leaf, chain).verify_certificate()
    except crypto.X509StoreContextError as exc:
        return int(exc.errors[0])
    return 1  # X509_V_ERR_UNSPECIFIED: the handshake's verification failed on what the store cannot re-check


def error_text(code: int) -> str:
    """OpenSSL's text for a verify code."""
    if not VERIFY:
        return f"OpenSSL verify error {code}"
    return str(_ffi.string(_lib.X509_verify_cert_error_string(code)).decode("ascii", "replace"))


def pin_store(store: crypto.X509Store, *, purpose: str, reference: str | None, at: dt.datetime | None) -> None:
    """Set the purpose (``"ssl_server"``/``"ssl_client"``), reference name and validation time of ``store`` as a
    handshake of the matching role uses them (needs ``VERIFY``)."""
    ptr = store._store  # noqa: SLF001
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


def openssl_crls(crls: Sequence[x509.CertificateRevocationList]) -> tuple[Any, ...]:
    """Each CRL as an OpenSSL ``X509_CRL``, freed with its handle (needs ``VERIFY``). Stores made per verification
    share them (``X509_STORE_add_crl`` takes a reference): converting a CRL of 50,000 entries takes 40 ms and 9 MiB."""
    handles = []
    for crl in crls:
        der = crl.public_bytes(serialization.Encoding.DER)
        buffer = _ffi.new("char[]", der)  # the BIO reads it after this call: memory cffi owns, alive until freed
        bio = _lib.BIO_new_mem_buf(buffer, len(der))
        if bio == _ffi.NULL:
            raise MemoryError("OpenSSL could not make a memory BIO")
        try:
            pointer = _lib.d2i_X509_CRL_bio(bio, _ffi.NULL)
        finally:
            _lib.BIO_free(bio)
        if pointer == _ffi.NULL:
            _lib.ERR_clear_error()
            raise ValueError("OpenSSL could not read a CRL that cryptography loaded")
        handles.append(_ffi.gc(pointer, _lib.X509_CRL_free))
    return tuple(handles)


def store_add_crls(store: crypto.X509Store, handles: Sequence[Any]) -> None:
    """Add CRLs made by ``openssl_crls`` to ``store`` (needs ``VERIFY``)."""
    for handle in handles:
        if _lib.X509_STORE_add_crl(store._store, handle) != 1:  # noqa: SLF001
            _lib.ERR_clear_error()
            raise ValueError("OpenSSL refused a CRL for the store")


# --- SESSIONS ----------------------------------------------------------------------------------------------------


def set_session_id_context(ctx: SSL.Context, sid_ctx: bytes) -> None:
    """Replace ``ctx``'s session ID context (at most 32 bytes), also once it made connections (needs ``SESSIONS``).
    New connections copy it; one created by another thread at that very moment may copy a mix of both, which only
    makes its resumption fail (a full handshake)."""
    if _lib.SSL_CTX_set_session_id_context(ctx._context, sid_ctx, len(sid_ctx)) != 1:  # noqa: SLF001
        raise ValueError("OpenSSL refused the session ID context")


# --- OBJECT NAMES ------------------------------------------------------------------------------------------------


def object_name(dotted: str) -> str | None:
    """OpenSSL's long name for the OID ``dotted`` (its short name when it has no long one), as ``OBJ_obj2txt``
    gives it; None when OpenSSL does not know the OID (needs ``OBJECT_NAMES``)."""
    nid = _lib.OBJ_txt2nid(dotted.encode("ascii"))
    if nid == _lib.NID_undef:
        return None
    for lookup in (_lib.OBJ_nid2ln, _lib.OBJ_nid2sn):
        name = lookup(nid)
        if name != _ffi.NULL:
            return str(_ffi.string(name).decode("ascii"))
    return None  # pragma: no cover - every object OpenSSL knows has a name


# --- TRUST STORE -------------------------------------------------------------------------------------------------


def default_ca_locations() -> tuple[str, str]:
    """(CA file, CA folder) compiled into the OpenSSL pyOpenSSL runs on, before any environment variable."""
    if TRUST_STORE:
        return (_ffi.string(_lib.X509_get_default_cert_file()).decode(),
                _ffi.string(_lib.X509_get_default_cert_dir()).decode())
    paths = ssl.get_default_verify_paths()  # pragma: no cover - depends on the installed pyOpenSSL
    return paths.openssl_cafile, paths.openssl_capath


def wheel_fallback_locations() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The CA files and folders pyOpenSSL's ``set_default_verify_paths`` tries, first existing one of each, when
    the defaults are those of cryptography's manylinux wheels (whose compiled-in paths exist on no system);
    empty where they are not."""
    wheel = (getattr(SSL, "_CRYPTOGRAPHY_MANYLINUX_CA_FILE", None),
             getattr(SSL, "_CRYPTOGRAPHY_MANYLINUX_CA_DIR", None))
    if None in wheel or tuple(p.encode() for p in default_ca_locations()) != wheel:
        return (), ()
    return (tuple(getattr(SSL, "_CERTIFICATE_FILE_LOCATIONS", ())),
            tuple(getattr(SSL, "_CERTIFICATE_PATH_LOCATIONS", ())))

"""`sec-protocol` and `cipher-list` applied to an ``SSL.Context`` (spec §8)."""

from __future__ import annotations

import re

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from OpenSSL import SSL

from ..errors import CipherListError
from .keys import TLSKey
from .where import Where

#: A server's leaf certificate and its private key.
Identity = tuple[x509.Certificate, TLSKey]

#: TLS 1.3 suites OpenSSL accepts in a list but, from security level 1 up, never negotiates.
BELOW_SECURITY_LEVEL = frozenset({"TLS_AES_128_CCM_8_SHA256"})
TLS13_SUITES = frozenset(
    {
        "TLS_AES_128_GCM_SHA256",
        "TLS_AES_256_GCM_SHA384",
        "TLS_CHACHA20_POLY1305_SHA256",
        "TLS_AES_128_CCM_SHA256",
        "TLS_AES_128_CCM_8_SHA256",
    }
)
#: sec-protocol value -> (minimum, maximum) protocol version. SSLv23 asks for TLS 1.1, which OpenSSL 3 only allows
#: at security level 0; gtls never lowers the level, so it yields TLS 1.2+ in practice (spec §8.1).
VERSION_RANGES: dict[str | None, tuple[int, int]] = {
    None: (SSL.TLS1_2_VERSION, SSL.TLS1_3_VERSION),
    "SSLv23": (SSL.TLS1_1_VERSION, SSL.TLS1_3_VERSION),
    "TLSv12": (SSL.TLS1_2_VERSION, SSL.TLS1_2_VERSION),
    "TLSv13": (SSL.TLS1_3_VERSION, SSL.TLS1_3_VERSION),
}


def apply_versions(ctx: SSL.Context, sec_protocol: str | None) -> tuple[int, int]:
    low, high = VERSION_RANGES[sec_protocol]  # TLSOptions admits no other value (UnsupportedProtocol there)
    ctx.set_min_proto_version(low)
    ctx.set_max_proto_version(high)
    return low, high


def _selects_something(token: str) -> bool:
    """Whether one cipher-string token selects a TLS ≤ 1.2 cipher by itself (operators never do)."""
    if token[:1] in "!-+@" or not token:
        return True  # removals, reorderings and @STRENGTH/@SECLEVEL select nothing by design
    probe = SSL.Context(SSL.TLS_METHOD)
    try:
        probe.set_cipher_list(token.encode("ascii"))
    except (SSL.Error, UnicodeEncodeError):
        return False
    return True


def _tls13_names(tokens: list[str], *, where: Where, warnings: list[str]) -> list[str]:
    """The TLS 1.3 suites listed, spelled as OpenSSL 3 needs them; CipherListError for IANA names and for TLS 1.3
    names behind an operator. Case-blind: OpenSSL 4 reads ``tls_aes_128_gcm_sha256`` and IANA names in any case,
    OpenSSL 3 in capitals only, so a lower-case name took a different path on each (and, as a TLS 1.3 suite, went to
    the TLS <= 1.2 string, where it selected nothing and left the TLS 1.3 defaults)."""
    option = "cipher-list"
    bare = [t.lstrip("!-+").upper() for t in tokens]
    iana = [t for t, name in zip(tokens, bare, strict=True) if name.startswith("TLS_") and name not in TLS13_SUITES]
    if iana:
        raise where.error(
            CipherListError,
            f"{', '.join(iana)} {'is an IANA name' if len(iana) == 1 else 'are IANA names'}; cipher-list takes "
            "OpenSSL names (e.g. ECDHE-ECDSA-AES128-GCM-SHA256) and the TLS 1.3 suite names only",
            option=option,
        )
    operated = [t for t, name in zip(tokens, bare, strict=True) if t[:1] in "!-+" and name in TLS13_SUITES]
    if operated:  # the TLS <= 1.2 string would take and ignore them: the TLS 1.3 list stayed as it was
        raise where.error(
            CipherListError,
            f"{', '.join(operated)}: !, - and + do not apply to TLS 1.3 suites; list the TLS 1.3 suites to keep",
            option=option,
        )
    for token in tokens:
        if token.upper() in TLS13_SUITES and token != token.upper():
            warnings.append(f"{option}: {token!r} read as {token.upper()!r} (TLS 1.3 suite names are written in "
                            "capitals)")
    return [t.upper() for t in tokens if t.upper() in TLS13_SUITES]


def apply_ciphers(ctx: SSL.Context, cipher_list: str | None, versions: tuple[int, int], *, where: Where,
                  warnings: list[str]) -> tuple[str | None, tuple[int, int]]:
    """Split the list, route TLS 1.3 suite names, and set the TLS ≤ 1.2 cipher string (spec §8.2). Returns that
    string (None: OpenSSL's defaults) and the version range now in force, for ``check_tls12_negotiable``.

    ``;`` separates tokens too: OpenSSL's cipher strings take it as ``:`` (gtls decision; the spec names ``:``, ``,``
    and whitespace), and kept inside a token it slipped TLS 1.3 and IANA names past every check to OpenSSL."""
    option = "cipher-list"
    if not cipher_list or not cipher_list.strip():
        return None, versions
    tokens = [t for t in re.split(r"[:;,\s]+", cipher_list.strip()) if t]
    tls13 = _tls13_names(tokens, where=where, warnings=warnings)
    # Anywhere in a token: OpenSSL also takes it glued to another one ("DEFAULT@SECLEVEL=0").
    seclevel = [t for t in tokens if "@SECLEVEL" in t.upper()]
    if seclevel:
        raise where.error(
            CipherListError,
            f"{seclevel[0]} is not allowed: gtls never changes OpenSSL's security level (spec §8.1)",
            option=option,
        )
    # First in the string, SUITEB… puts OpenSSL in Suite B mode (ECDSA P-256/P-384 only, also in TLS 1.3; the rest of
    # the string dropped): an RSA certificate then fails every handshake. Anywhere else it selects nothing.
    suite_b = [t for t in tokens if t.lstrip("!-+").upper().startswith("SUITEB")]
    if suite_b:
        raise where.error(
            CipherListError,
            f"{suite_b[0]} is not allowed: it switches OpenSSL to Suite B mode (ECDSA P-256/P-384 certificates only, "
            "the rest of the list ignored); list ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384 instead",
            option=option,
        )
    legacy = [t for t in tokens if t.upper() not in TLS13_SUITES]
    low, high = versions
    if high < SSL.TLS1_3_VERSION and tls13 and not legacy:
        raise where.error(CipherListError, "only TLS 1.3 suites listed, but sec-protocol=TLSv12 excludes TLS 1.3",
                          option=option)
    if low >= SSL.TLS1_3_VERSION and legacy and not tls13:
        raise where.error(CipherListError, "no TLS 1.3 suite listed, but sec-protocol=TLSv13 allows only TLS 1.3",
                          option=option)
    if legacy:
        dead = [t for t in legacy if not _selects_something(t)]
        try:
            ctx.set_cipher_list(":".join(legacy).encode("ascii"))
        except (SSL.Error, UnicodeEncodeError):
            raise where.error(
                CipherListError, f"{':'.join(legacy)!r} selects no cipher (OpenSSL cipher string syntax)",
                option=option
            ) from None
        if dead:
            warnings.append(f"{option}: {', '.join(dead)} {'selects' if len(dead) == 1 else 'select'} no cipher")
    if tls13:  # after the TLS <= 1.2 string: pyOpenSSL's empty-selection check compares against the 1.3 defaults
        versions = _weak_tls13(ctx, tls13, versions, where=where, warnings=warnings)
        ctx.set_tls13_ciphersuites(":".join(tls13).encode("ascii"))
    return (":".join(legacy) if legacy else None), versions


def _weak_tls13(ctx: SSL.Context, tls13: list[str], versions: tuple[int, int], *, where: Where,
                warnings: list[str]) -> tuple[int, int]:
    """Name the listed TLS 1.3 suites the security level refuses. When that is all of them, TLS 1.3 is turned off:
    OpenSSL would still negotiate TLS 1.3 with a client offering it and then find no suite (a server's
    no-shared-cipher), and a client with no TLS 1.3 suite to offer sends no hello at all ("no ciphers available")."""
    option = "cipher-list"
    low = versions[0]
    weak = list(dict.fromkeys(t for t in tls13 if t in BELOW_SECURITY_LEVEL))
    if weak and all(t in BELOW_SECURITY_LEVEL for t in tls13):
        message = (f"{', '.join(weak)} is the only TLS 1.3 suite listed, and OpenSSL's security level never "
                   "negotiates it (an 8-byte tag: 64-bit security)")
        if low >= SSL.TLS1_3_VERSION:  # TLS 1.3 only: every handshake would fail with no-shared-cipher
            raise where.error(CipherListError, f"{message}; list another TLS 1.3 suite", option=option)
        ctx.set_max_proto_version(SSL.TLS1_2_VERSION)
        warnings.append(f"{option}: {message}; TLS 1.3 is turned off, the endpoint speaks TLS 1.2 only")
        return low, SSL.TLS1_2_VERSION
    if weak:
        warnings.append(f"{option}: {', '.join(weak)} is never negotiated: OpenSSL's security level refuses it")
    return versions


def check_tls12_negotiable(cipher_string: str, versions: tuple[int, int], identity: Identity | None, *,
                           where: Where, warnings: list[str]) -> None:
    """A TLS ≤ 1.2 cipher string OpenSSL accepts can still leave nothing a handshake may use: NULL and anonymous
    ciphers are below the security level, PSK and SRP need a set-up gtls never makes, RSA ciphers need an RSA key.
    Then every TLS 1.2 handshake fails with no-shared-cipher. One partial handshake in memory tells, once per
    compiled context (~1 ms): a client's own hello with the string, or a server's answer to a broad client's hello
    from a scratch context with the string and the port's certificate."""
    low, high = versions
    if low > SSL.TLS1_2_VERSION or high < SSL.TLS1_2_VERSION:
        return
    why = _tls12_refusal(cipher_string, identity)
    if why is None:
        return
    message = f"{cipher_string!r} leaves no cipher a TLS 1.2 handshake can use: {why}"
    if high < SSL.TLS1_3_VERSION:  # TLS 1.2 only: every handshake would fail
        raise where.error(CipherListError, f"{message}; every handshake would fail with no-shared-cipher",
                          option="cipher-list")
    warnings.append(f"cipher-list: {message}; peers without TLS 1.3 all fail")


def _scratch(cipher_string: str) -> SSL.Context:
    ctx = SSL.Context(SSL.TLS_METHOD)
    ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
    ctx.set_max_proto_version(SSL.TLS1_2_VERSION)
    ctx.set_cipher_list(cipher_string.encode("ascii"))
    return ctx


def _hello(ctx: SSL.Context) -> bytes | None:
    """The ClientHello a client of ``ctx`` sends, or None when OpenSSL has no cipher to offer."""
    conn = SSL.Connection(ctx, None)
    conn.set_connect_state()
    try:
        conn.do_handshake()
    except SSL.WantReadError:
        return conn.bio_read(65536)
    except SSL.Error:
        return None
    return None  # pragma: no cover - a handshake cannot complete without a peer


def _tls12_refusal(cipher_string: str, identity: Identity | None) -> str | None:
    if identity is None:  # a client: does it find anything to offer?
        if _hello(_scratch(cipher_string)) is None:
            return "OpenSSL's security level refuses each cipher it selects, or they need PSK or SRP"
        return None
    if _answers(cipher_string, identity):
        return None
    key = identity[1]
    if not _answers("DEFAULT", identity) and _names_the_key(cipher_string, key) is not False:
        # Not even OpenSSL's own list answers: the probe's client cannot use the key (a brainpool or secp256k1
        # curve, DSA: each named at load time), so the list is judged by the authentication its ciphers name.
        return None
    return (f"none of its ciphers both passes OpenSSL's security level and authenticates with {_key_auth(key)[0]} "
            "key like the certificate's")


def _names_the_key(cipher_string: str, key: TLSKey) -> bool | None:
    """Whether a cipher the string selects authenticates with this key type (by OpenSSL's cipher names), or None for
    a key type this does not judge."""
    marker = _key_auth(key)[1]
    if marker is None:
        return None
    return any(marker in f"-{name}-" for name in SSL.Connection(_scratch(cipher_string), None).get_cipher_list())


def _answers(cipher_string: str, identity: Identity) -> bool:
    """Whether a scratch TLS 1.2 server with this string and identity answers a client offering every cipher."""
    hello = _hello(_scratch("ALL"))
    assert hello is not None
    server = _scratch(cipher_string)
    leaf, key = identity
    server.use_certificate(leaf)
    server.use_privatekey(key)
    conn = SSL.Connection(server, None)
    conn.set_accept_state()
    conn.bio_write(hello)
    try:
        conn.do_handshake()
    except SSL.WantReadError:
        return True  # the server answered: a cipher was chosen
    except SSL.Error:
        return False
    return True  # pragma: no cover - a handshake cannot complete without a peer


#: Key types as the TLS 1.2 check names them, with the part of OpenSSL's cipher names that authenticate with them
#: (ECDSA suites also take Ed25519 and Ed448 keys; RSA is not judged by name: the probe's client always takes it).
_KEY_AUTH: tuple[tuple[type, str, str | None], ...] = (
    (rsa.RSAPrivateKey, "an RSA", None),
    (ec.EllipticCurvePrivateKey, "an ECDSA", "-ECDSA-"),
    (ed25519.Ed25519PrivateKey, "an Ed25519", "-ECDSA-"),
    (ed448.Ed448PrivateKey, "an Ed448", "-ECDSA-"),
    (dsa.DSAPrivateKey, "a DSA", "-DSS-"),
)


def _key_auth(key: TLSKey) -> tuple[str, str | None]:
    """How a message names ``key``'s type, and the cipher-name part of the suites it can authenticate."""
    return next(((kind, marker) for cls, kind, marker in _KEY_AUTH if isinstance(key, cls)),
                (f"a {type(key).__name__}", None))

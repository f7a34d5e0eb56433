"""The gtls exception hierarchy and the stable failure-reason words (spec §10).

Two families:

* ``ConfigError`` — raised before any network I/O when settings cannot be turned into a secure endpoint.
  Each carries the object path (``applications.statserver.ports.default``), the level and the option, so the
  message says what to change and where.
* ``TLSError`` → ``HandshakeError`` → ``PeerVerificationError`` — raised at run time, each with a ``reason``
  from the stable vocabulary below, plus the peer address, certificate depth and subject when known.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Final, Literal

from ._levels import LevelTitle, Shadowed
from ._redact import redact

if TYPE_CHECKING:
    from ._handshake_errors import HandshakeError as HandshakeError
    from ._handshake_errors import PeerVerificationError as PeerVerificationError

# --- Stable reason words (spec §10). Never rename: they appear in logs, metrics and the CLI's error line. ---

UNTRUSTED: Final = "untrusted"
EXPIRED: Final = "expired"
NOT_YET_VALID: Final = "not-yet-valid"
REVOKED: Final = "revoked"
CRL_UNAVAILABLE: Final = "crl-unavailable"
CRL_EXPIRED: Final = "crl-expired"
CRL_NOT_YET_VALID: Final = "crl-not-yet-valid"
CRL_SIGNATURE: Final = "crl-signature"
BAD_CA: Final = "bad-ca"
BAD_PURPOSE: Final = "bad-purpose"
NAME_MISMATCH: Final = "name-mismatch"
NO_PEER_CERTIFICATE: Final = "no-peer-certificate"
PROTOCOL_VERSION: Final = "protocol-version"
NO_SHARED_CIPHER: Final = "no-shared-cipher"
PEER_ALERT: Final = "peer-alert"
NOT_TLS: Final = "not-tls"
TIMEOUT: Final = "timeout"
EOF_IN_HANDSHAKE: Final = "eof-in-handshake"

#: A runtime reason word: the type of ``HandshakeError.reason``, so type checkers catch a misspelt word compared
#: with it (``exc.reason == "untrsted"`` under ``--strict``). The same words as ``REASONS``, in the same order.
Reason = Literal[
    "untrusted", "expired", "not-yet-valid", "revoked", "crl-unavailable", "crl-expired", "crl-not-yet-valid",
    "crl-signature", "bad-ca", "bad-purpose", "name-mismatch", "no-peer-certificate", "protocol-version",
    "no-shared-cipher", "peer-alert", "not-tls", "timeout", "eof-in-handshake",
]

#: A negotiated protocol version as OpenSSL names it: the type of ``TLSStream.tls_version`` and the like, so a
#: misspelt name (``"TLS1.3"``) compared with it is a type error. ``sec-protocol=SSLv23`` starts at TLS 1.1, which
#: OpenSSL negotiates only at security level 0: gtls never sets that (``@SECLEVEL`` is refused), but an OpenSSL
#: configuration file can. Nothing below TLS 1.1 is ever allowed.
TLSVersionName = Literal["TLSv1.3", "TLSv1.2", "TLSv1.1"]

#: Every runtime reason word, in the order of spec §10.
REASONS: Final[tuple[Reason, ...]] = (
    UNTRUSTED,
    EXPIRED,
    NOT_YET_VALID,
    REVOKED,
    CRL_UNAVAILABLE,
    CRL_EXPIRED,
    CRL_NOT_YET_VALID,
    CRL_SIGNATURE,
    BAD_CA,
    BAD_PURPOSE,
    NAME_MISMATCH,
    NO_PEER_CERTIFICATE,
    PROTOCOL_VERSION,
    NO_SHARED_CIPHER,
    PEER_ALERT,
    NOT_TLS,
    TIMEOUT,
    EOF_IN_HANDSHAKE,
)
#: Reasons raised as ``PeerVerificationError`` (a certificate was judged and rejected): §10 lists them first.
CERTIFICATE_REASONS: Final[frozenset[Reason]] = frozenset(REASONS[: REASONS.index(NO_PEER_CERTIFICATE) + 1])
#: How far to follow an exception's causes: real chains are 2-4 links long; the bound only guards against cycles.
MAX_CAUSE_CHAIN: Final = 8


class GtlsError(Exception):
    """Base of every error gtls raises on purpose."""


# --- Configuration errors (raised when a port opens or a connection is set up) ---


class ConfigError(GtlsError):
    """Settings cannot be turned into a secure endpoint. Fail closed: never falls back to plaintext.

    ``object_path`` names the deployment object (``applications.app.ports.default``), ``level`` the
    resolution level (``Port``, ``Connection``, ``Application``, ``Host``), ``option`` the option name and
    ``file`` a file involved, each ``None`` when not applicable. ``str()`` gives one line saying all of it.
    """

    def __init__(
        self,
        message: str,
        *,
        object_path: str | None = None,
        level: LevelTitle | None = None,
        option: str | None = None,
        file: str | None = None,
    ) -> None:
        # Values users gave appear in messages: a key pasted where a path or name belongs must not (gtls._redact).
        self.message = message = redact(message)
        self.object_path = object_path
        self.level = level
        self.option = option
        self.file = file
        super().__init__(message)

    #: Warnings given while compiling the settings that failed, which often name the cause (an identity skipped
    #: as world-readable, then "thumbprint not found"). Also added as notes, so a traceback shows them.
    warnings: tuple[str, ...] = ()
    #: Where resolution failed after finding the levels: the parameter-set options of the levels it did not use
    #: (``Resolved.shadowed``), often the settings the user meant to be used.
    shadowed: tuple[Shadowed, ...] = ()

    def __str__(self) -> str:
        prefix = []
        if self.object_path:
            prefix.append(self.object_path)
        if self.level and self.level != _level_of_object(self.object_path):
            prefix.append(f"level {self.level}")
        if self.option:
            prefix.append(self.option)
        head = ": ".join(prefix)
        return redact(f"{head}: {self.message}") if head else self.message

    def with_warnings(self, warnings: Iterable[str]) -> ConfigError:
        """Keep ``warnings`` (redacted, each once) with this error; returns self."""
        for warning in map(redact, warnings):
            if warning not in self.warnings:
                self.warnings = (*self.warnings, warning)
                self.add_note(f"warning: {warning}")
        return self

    def located(self, *, object_path: str | None = None, level: LevelTitle | None = None) -> ConfigError:
        """Fill in where the error happened, keeping what is already known; returns self."""
        if self.object_path is None:
            self.object_path = object_path
        if self.level is None:
            self.level = level
        return self


#: The level an object's own settings form, by the collection its deployment path ends in.
_LEVEL_OF_COLLECTION: Final[dict[str, LevelTitle]] = {"ports": "Port", "connections": "Connection", "hosts": "Host"}


def _level_of_object(object_path: str | None) -> LevelTitle | None:
    """The level ``object_path`` itself stands for, which its message need not repeat: ``Port`` for
    ``applications.A.ports.P``, ``Host`` for ``hosts.H``, ``Application`` for ``applications.A``. Any other level
    (a port's error coming from its Application or Host settings) is always named: the user must edit that level,
    not the object."""
    if not object_path:
        return None
    parts = object_path.split(".")
    if len(parts) == 2 and parts[0] == "applications":
        return "Application"
    return _LEVEL_OF_COLLECTION.get(parts[-2]) if len(parts) >= 2 else None


class DeploymentError(ConfigError):
    """The deployment file is malformed, has wrong types, unknown keys or dangling references."""


class IncompleteTlsLevel(ConfigError):
    """The effective level lacks required options, or no level has TLS settings (``level`` is None)."""

    def __init__(self, message: str, *, missing: Sequence[str] = (), object_path: str | None = None,
                 level: LevelTitle | None = None, option: str | None = None, file: str | None = None) -> None:
        self.missing = tuple(missing)
        super().__init__(message, object_path=object_path, level=level, option=option, file=file)


class ConflictingOptions(ConfigError):
    """``crl`` and ``tls-crl`` differ at one level."""


class InvalidOptionValue(ConfigError):
    """A value outside its allowed set, a bad target or reference name, or a thumbprint in ``trusted-ca``."""


class UnsupportedProtocol(InvalidOptionValue):
    """``sec-protocol`` is not empty, ``SSLv23``, ``TLSv12`` or ``TLSv13`` (an invalid value of that option:
    ``except InvalidOptionValue`` catches it too)."""


class UnsupportedFeature(ConfigError):
    """A recognised but unsupported option at a non-default value, or a thumbprint without a store."""


class CredentialLoadError(ConfigError):
    """A certificate, key, CA or store file is missing, unreadable, not PEM or lacks its content."""


class KeyMismatch(ConfigError):
    """No loaded certificate matches ``certificate-key``."""


class CrlLoadError(ConfigError):
    """The ``tls-crl`` file is missing, unreadable, not PEM or holds no CRL."""


class CipherListError(ConfigError):
    """``cipher-list`` selects nothing usable within the ``sec-protocol`` range."""


# --- Runtime errors ---


class TLSError(GtlsError):
    """Base of runtime TLS failures."""

    #: The negotiated version (``"TLSv1.2"``) of a connection that failed after its handshake, when known:
    #: ``classify_ending`` reads it, since renegotiation (and so its refusal) exists only before TLS 1.3.
    tls_version: TLSVersionName | None = None


#: Everything public, the runtime pair included: ``from gtls.errors import *`` then asks ``__getattr__`` for them.
__all__ = [
    "UNTRUSTED", "EXPIRED", "NOT_YET_VALID", "REVOKED", "CRL_UNAVAILABLE", "CRL_EXPIRED", "CRL_NOT_YET_VALID",
    "CRL_SIGNATURE", "BAD_CA", "BAD_PURPOSE", "NAME_MISMATCH", "NO_PEER_CERTIFICATE", "PROTOCOL_VERSION",
    "NO_SHARED_CIPHER", "PEER_ALERT", "NOT_TLS", "TIMEOUT", "EOF_IN_HANDSHAKE", "REASONS", "CERTIFICATE_REASONS",
    "Reason", "TLSVersionName", "LevelTitle", "MAX_CAUSE_CHAIN", "GtlsError", "ConfigError", "DeploymentError",
    "IncompleteTlsLevel", "ConflictingOptions", "InvalidOptionValue", "UnsupportedProtocol", "UnsupportedFeature",
    "CredentialLoadError", "KeyMismatch", "CrlLoadError", "CipherListError", "TLSError", "HandshakeError",
    "PeerVerificationError",
]


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


if not TYPE_CHECKING:

    def __getattr__(name: str) -> object:
        # HandshakeError is also a trio.BrokenResourceError (gtls._handshake_errors), so it lives where trio is
        # imported: `import gtls`, resolution, deployment files and gtls --help do not load trio for it.
        if name in ("HandshakeError", "PeerVerificationError"):
            from . import _handshake_errors

            return getattr(_handshake_errors, name)
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

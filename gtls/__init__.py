"""gtls: a TLS transport runtime for trio, configured like the Genesys Security Pack.

The configuration names (errors, options, resolution, deployment files) need only the standard library and are
imported here; the names that need trio, pyOpenSSL or cryptography load on first use (module ``__getattr__``), so
``gtls --help`` and ``gtls check`` on a broken file do not pay for them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ._version import __version__ as __version__
from .deployment import Deployment, Endpoint, EndpointRef, load_deployment
from .errors import (
    CipherListError,
    ConfigError,
    ConflictingOptions,
    CredentialLoadError,
    CrlLoadError,
    DeploymentError,
    GtlsError,
    IncompleteTlsLevel,
    InvalidOptionValue,
    KeyMismatch,
    TLSError,
    UnsupportedFeature,
    UnsupportedProtocol,
)
from .options import TLSOptions, parse_transport
from .resolve import Level, Resolved, Shadowed, direct, resolve_client, resolve_server

if TYPE_CHECKING:
    from ._handshake_errors import HandshakeError, PeerVerificationError
    from .client import ClientEndpoint, connect, open_tls_over_tcp_stream
    from .context import CompiledContext, compile_context
    from .ending import Ending, classify_ending
    from .server import HandshakeEvent, TLSListener, open_tls_over_tcp_listeners, serve_tls_over_tcp
    from .stream import HalfCloseUnsupported, TLSStream
    from .verify import verify_chain

#: Submodules loaded on first attribute access (the rest are imported with the package).
_SUBMODULES = frozenset({"bench", "cli", "client", "context", "demo", "ending", "pki", "server", "stream", "testing",
                         "verify"})
#: Public name -> the submodule defining it, for the names loaded on first use.
_LAZY = {
    "HandshakeError": "_handshake_errors",  # also a trio.BrokenResourceError: it needs trio
    "PeerVerificationError": "_handshake_errors",
    "ClientEndpoint": "client",
    "connect": "client",
    "open_tls_over_tcp_stream": "client",
    "CompiledContext": "context",
    "compile_context": "context",
    "Ending": "ending",
    "classify_ending": "ending",
    "HandshakeEvent": "server",
    "TLSListener": "server",
    "open_tls_over_tcp_listeners": "server",
    "serve_tls_over_tcp": "server",
    "TLSStream": "stream",
    "HalfCloseUnsupported": "stream",
    "verify_chain": "verify",
}


if not TYPE_CHECKING:  # hidden from type checkers, which would otherwise accept any name as gtls.<typo>

    def __getattr__(name: str) -> object:
        if name in _SUBMODULES:  # gtls.context.STATS after a bare `import gtls`, as type checkers already allow
            return importlib.import_module(f".{name}", __name__)
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{module}", __name__), name)
        globals()[name] = value  # later look-ups skip this function
        return value


#: Names this module's own code needs, not gtls's interface: kept out of ``dir(gtls)`` (and so out of completions).
_INTERNAL = frozenset({"annotations", "importlib", "TYPE_CHECKING"})


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__} - _INTERNAL)


__all__ = [
    "CipherListError",
    "ClientEndpoint",
    "CompiledContext",
    "ConfigError",
    "ConflictingOptions",
    "CredentialLoadError",
    "CrlLoadError",
    "Deployment",
    "DeploymentError",
    "Ending",
    "Endpoint",
    "EndpointRef",
    "GtlsError",
    "HalfCloseUnsupported",
    "HandshakeError",
    "HandshakeEvent",
    "IncompleteTlsLevel",
    "InvalidOptionValue",
    "KeyMismatch",
    "Level",
    "PeerVerificationError",
    "Resolved",
    "Shadowed",
    "TLSError",
    "TLSListener",
    "TLSOptions",
    "TLSStream",
    "UnsupportedFeature",
    "UnsupportedProtocol",
    "classify_ending",
    "compile_context",
    "connect",
    "direct",
    "load_deployment",
    "open_tls_over_tcp_listeners",
    "open_tls_over_tcp_stream",
    "parse_transport",
    "resolve_client",
    "resolve_server",
    "serve_tls_over_tcp",
    "verify_chain",
]

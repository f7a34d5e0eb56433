"""gtls: a TLS transport runtime for trio, configured like the Genesys Security Pack."""

from __future__ import annotations

from .client import connect, open_tls_over_tcp_stream
from .context import CompiledContext, compile_context
from .deployment import Deployment, Endpoint, EndpointRef, load_deployment
from .errors import (
    CipherListError,
    ConfigError,
    ConflictingOptions,
    CredentialLoadError,
    CrlLoadError,
    DeploymentError,
    GtlsError,
    HandshakeError,
    IncompleteTlsLevel,
    InvalidOptionValue,
    KeyMismatch,
    PeerVerificationError,
    TLSError,
    UnsupportedFeature,
    UnsupportedProtocol,
)
from .options import TLSOptions, parse_transport
from .resolve import Level, Resolved, Shadowed, direct, resolve_client, resolve_server
from .server import HandshakeEvent, TLSListener, open_tls_over_tcp_listeners, serve_tls_over_tcp
from .stream import TLSStream
from .verify import verify_chain

__all__ = [
    "CipherListError",
    "CompiledContext",
    "ConfigError",
    "ConflictingOptions",
    "CredentialLoadError",
    "CrlLoadError",
    "Deployment",
    "DeploymentError",
    "Endpoint",
    "EndpointRef",
    "GtlsError",
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

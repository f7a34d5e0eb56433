"""gtls: a TLS transport runtime for trio, configured like the Genesys Security Pack."""

from __future__ import annotations

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
    "IncompleteTlsLevel",
    "InvalidOptionValue",
    "KeyMismatch",
    "Level",
    "PeerVerificationError",
    "Resolved",
    "Shadowed",
    "TLSError",
    "TLSOptions",
    "UnsupportedFeature",
    "UnsupportedProtocol",
    "compile_context",
    "direct",
    "load_deployment",
    "parse_transport",
    "resolve_client",
    "resolve_server",
    "verify_chain",
]

"""The flags ``serve`` and ``connect`` share: where the settings come from (``--config``/``--app``/the endpoint) and the
option flags (``--certificate`` …), turned into resolved settings."""

from __future__ import annotations

import argparse
import math
import os
from typing import TYPE_CHECKING

from ..options import expand_home
from ._common import UsageError

if TYPE_CHECKING:
    from ..resolve import Resolved, Role

#: Genesys option name -> help text. Values are passed as typed; ``gtls.options`` validates them.
_COMMON_FLAGS: dict[str, str] = {
    "certificate": "own certificate and chain: PEM files, comma-separated (or a thumbprint with --certificate-store)",
    "certificate-key": "PEM file with the unencrypted private key of the certificate",
    "trusted-ca": "one PEM file with the CA certificates that verify the peer",
    "tls-crl": "PEM file with CRLs to check the peer against (alias --crl)",
    "crl": argparse.SUPPRESS,
    "tls-crl-scope": "leaf | chain: which peer certificates the CRL must cover",
    "tls-crl-expired": "reject | warn: handling of a CRL past its next update",
    "certificate-store": "folder or PEM files where a thumbprint --certificate is looked up",
    "sec-protocol": "empty, SSLv23, TLSv12 or TLSv13",
    "cipher-list": "OpenSSL cipher string and/or TLS 1.3 suite names",
}
_CLIENT_FLAGS: dict[str, str] = {
    "tls-target-name-check": "no | host: check the server certificate's names against the reference name",
    "tls-target-name": "SNI and reference name for the name check (default: the dialled host)",
}
#: Options holding file paths. Paths on the command line are made absolute against the working directory, as
#: any command's arguments are, instead of getting the spec's "should be absolute" warning (gtls CLI decision).
_PATH_OPTIONS = ("certificate", "certificate-key", "trusted-ca", "tls-crl", "crl", "certificate-store")
#: Options naming credentials: when none is given, ``serve`` falls back to the demo PKI.
CREDENTIAL_OPTIONS = ("certificate", "certificate-key", "trusted-ca", "certificate-store")


def _dest(option: str) -> str:
    return "opt_" + option.replace("-", "_")


def add_settings_source(parser: argparse.ArgumentParser, role: Role) -> argparse._ArgumentGroup:
    """``--config FILE --app NAME`` and the endpoint: ``--port-id ID`` for a server, ``--connection ID`` for a
    client. Returns the group, for command-specific source flags."""
    source = parser.add_argument_group("where the settings come from")
    source.add_argument("--config", metavar="FILE", help="deployment file (TOML)")
    if role == "server":
        source.add_argument("--app", metavar="NAME", help="application in the deployment file")
        source.add_argument("--port-id", metavar="ID", help="port of the application (default: its only port)")
    else:
        source.add_argument("--app", metavar="NAME", help="client application in the deployment file")
        source.add_argument("--connection", metavar="ID", help="connection of the application")
    return source


def settings_from_config(args: argparse.Namespace, flags: dict[str, str], role: Role) -> bool:
    """Whether the settings come from ``--config`` (else from option flags); UsageError when the source flags
    do not fit together."""
    endpoint_flag, endpoint = ("--port-id", args.port_id) if role == "server" else ("--connection", args.connection)
    if not args.config:
        if args.app or endpoint:
            raise UsageError(f"--app and {endpoint_flag} need --config FILE")
        return False
    if args.app is None or (role == "client" and endpoint is None):  # a server's port defaults to the only one
        raise UsageError("--config needs --app NAME" + (" and --connection ID" if role == "client" else ""))
    if flags or args.profile:
        raise UsageError("option flags cannot be combined with --config: the deployment file holds the settings "
                         f"(got --{', --'.join(sorted(flags)) or 'profile'})")
    return True


def require_positive_seconds(value: float, flag: str) -> None:
    if not (value > 0 and math.isfinite(value)):
        raise UsageError(f"{flag} must be a positive number of seconds")


def add_option_flags(parser: argparse.ArgumentParser, role: Role) -> None:
    group = parser.add_argument_group("TLS options (named like the [security] options)")
    flags = dict(_COMMON_FLAGS)
    if role == "client":
        flags.update(_CLIENT_FLAGS)
    for option, help_text in flags.items():
        group.add_argument(f"--{option}", dest=_dest(option), metavar="VALUE", help=help_text)
    if role == "server":
        group.add_argument(
            "--tls-mutual", dest=_dest("tls-mutual"), nargs="?", const="1", metavar="BOOL",
            help="require a client certificate verified against --trusted-ca (--tls-mutual alone means 1)",
        )
    group.add_argument("--profile", choices=("unix", "windows"), default=None,
                       help="requirement profile (default unix)")


def given_options(args: argparse.Namespace) -> dict[str, str]:
    """The option flags present on the command line, by Genesys name, paths made absolute."""
    mapping: dict[str, str] = {}
    for option in (*_COMMON_FLAGS, *_CLIENT_FLAGS, "tls-mutual"):
        value = getattr(args, _dest(option), None)
        if value is not None:
            mapping[option] = _absolute(option, value) if option in _PATH_OPTIONS else value
    return mapping


def _absolute(option: str, value: str) -> str:
    from ..options import is_thumbprint

    if option == "trusted-ca" and is_thumbprint(value):
        return value  # refused as a thumbprint (spec §4.4), not reported as a missing file
    if option in ("trusted-ca", "certificate-key", "tls-crl", "crl"):
        # One path each (a comma in trusted-ca is part of the file name, spec §6).
        return _absolute_path(value)
    parts = []
    for part in value.split(","):
        element = part.strip()
        # A thumbprint is not a path (spec §4.4); gtls.pki decides what the value finally means.
        parts.append(element if not element or is_thumbprint(element) else _absolute_path(element))
    return ",".join(parts)


def _absolute_path(path: str) -> str:
    path = path.strip()
    return os.path.abspath(expand_home(path)) if path else path


def settings_from_flags(
    mapping: dict[str, str], role: Role, *, profile: str | None, warnings: list[str]
) -> Resolved:
    """Validate the flags as one level (P for a server, C for a client) and resolve them (spec §3.2)."""
    from ..errors import IncompleteTlsLevel
    from ..resolve import Level, direct, empty_note

    chosen = profile or "unix"
    if chosen not in ("unix", "windows"):
        raise UsageError(f"--profile must be unix or windows, got {chosen!r}")
    try:
        return direct(mapping, role, profile=chosen, base_dir=None, warnings=warnings)
    except IncompleteTlsLevel as exc:
        if not exc.missing:
            raise
        # Say it in terms of flags: the resolver's wording is about deployment levels.
        level = (Level.PORT if role == "server" else Level.CONNECTION).title
        flags = ", ".join(f"--{name}" for name in exc.missing)
        empty = empty_note([f"--{name}" for name in exc.missing],
                           [f"--{name}" for name, value in mapping.items() if not value.strip()])
        raise IncompleteTlsLevel(
            f"the {role} settings given on the command line lack {flags} (profile {chosen}; "
            f"all TLS settings come from the flags){empty}",
            missing=exc.missing, level=level, option=exc.missing[0],
        ) from None

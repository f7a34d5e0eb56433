"""Scenario names and what each one measures.

Handshake scenarios are named ``KEY-VERSION[-mutual][-crl][-resumed][-stime]`` (``ecdsa-tls13-mutual-crl``); the others
are ``bulk-16k``, ``bulk-64k``, ``idle-memory`` and ``client-connector``. A CRL on a server only matters when it
checks client certificates, so ``crl`` requires ``mutual``. ``stime`` loads the servers with ``openssl s_time``
processes instead of the Python load client (full handshakes without client certificates only: s_time sends no
client chain and reads no TLS 1.3 ticket).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .pki import KeyType

Kind = Literal["handshake", "bulk", "idle-memory", "client-connector"]
Version = Literal["1.2", "1.3"]


@dataclass(frozen=True)
class TLSSetup:
    """The server-side TLS settings every peer is given for one scenario."""

    key_type: KeyType = "ec"
    version: Version = "1.3"
    mutual: bool = False
    crl: bool = False


@dataclass(frozen=True)
class Scenario:
    name: str
    kind: Kind
    tls: TLSSetup
    resumed: bool = False
    s_time: bool = False  # load with openssl s_time
    write_size: int = 0  # bulk only


DEFAULT = (
    "ecdsa-tls13",
    "ecdsa-tls12",
    "rsa-tls13",
    "rsa-tls12",
    "ecdsa-tls13-mutual",
    "ecdsa-tls13-mutual-crl",
    "ecdsa-tls13-resumed",
    "ecdsa-tls12-resumed",
    "ecdsa-tls13-stime",
    "bulk-16k",
    "bulk-64k",
    "idle-memory",
    "client-connector",
)
# Quick mode keeps the scenarios the targets are stated for.
QUICK = ("ecdsa-tls13", "ecdsa-tls13-mutual", "bulk-16k", "idle-memory", "client-connector")
SMALLEST = "ecdsa-tls13"

_KEYS: dict[str, KeyType] = {"ecdsa": "ec", "rsa": "rsa"}
_VERSIONS: dict[str, Version] = {"tls13": "1.3", "tls12": "1.2"}
_FLAGS = ("mutual", "crl", "resumed", "stime")


def parse(name: str) -> Scenario:
    """The scenario called ``name``; ``ValueError`` with the accepted forms otherwise."""
    if name in ("bulk-16k", "bulk-64k"):
        return Scenario(name, "bulk", TLSSetup(), write_size=1024 * int(name[5:-1]))
    if name == "idle-memory":
        return Scenario(name, "idle-memory", TLSSetup())
    if name == "client-connector":
        return Scenario(name, "client-connector", TLSSetup())
    parts = name.split("-")
    flags = parts[2:]
    valid = (
        len(parts) >= 2
        and parts[0] in _KEYS
        and parts[1] in _VERSIONS
        and all(flag in _FLAGS for flag in flags)
        and len(set(flags)) == len(flags)
        and flags == sorted(flags, key=_FLAGS.index)
        and ("crl" not in flags or "mutual" in flags)
        and ("stime" not in flags or flags == ["stime"])
    )
    if not valid:
        raise ValueError(
            f"unknown scenario {name!r}: use KEY-VERSION[-mutual][-crl][-resumed] or KEY-VERSION-stime with KEY "
            "ecdsa|rsa and VERSION tls13|tls12 (crl needs mutual), or bulk-16k, bulk-64k, idle-memory, client-connector"
        )
    setup = TLSSetup(_KEYS[parts[0]], _VERSIONS[parts[1]], "mutual" in flags, "crl" in flags)
    return Scenario(name, "handshake", setup, resumed="resumed" in flags, s_time="stime" in flags)

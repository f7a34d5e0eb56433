"""The scenario PKI: root → intermediate → server and client leaves, written as PEM files for every peer.

Built with :mod:`gtls.testing`, once per key type and run. Each peer is given the same material in the form it reads:
gtls takes ``certificate=leaf,intermediate``; nginx and trio a single chain file; ``openssl s_server`` ``-cert_chain``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

KeyType = Literal["ec", "rsa"]

CRL_ENTRIES = 1000


@dataclass(frozen=True)
class ScenarioPKI:
    directory: Path
    root: Path  # trusted CA file (root only)
    intermediate: Path
    server_cert: Path  # leaf only
    server_chain: Path  # leaf + intermediate
    server_key: Path
    client_cert: Path
    client_chain: Path
    client_key: Path
    crl: Path  # 1,000-entry CRL of the intermediate, plus the root's empty CRL (for chain-wide checkers: nginx)


def make_pki(directory: Path, key_type: KeyType) -> ScenarioPKI:
    """Write a fresh PKI of ``key_type`` (``"ec"`` P-256 or ``"rsa"`` 2048) into ``directory``."""
    from gtls import testing  # lazy: only a benchmark run needs the test PKI

    directory.mkdir(parents=True, exist_ok=True)
    root = testing.CA.root(f"gtls bench root {key_type}", key_type=key_type)
    intermediate = root.intermediate(f"gtls bench intermediate {key_type}", key_type=key_type)
    server = intermediate.leaf("localhost", dns=("localhost",), ips=("127.0.0.1",), key_type=key_type)
    client = intermediate.leaf("bench client", key_type=key_type)
    pki = ScenarioPKI(
        directory=directory,
        root=directory / "root.pem",
        intermediate=directory / "intermediate.pem",
        server_cert=directory / "server-cert.pem",
        server_chain=directory / "server-chain.pem",
        server_key=directory / "server-key.pem",
        client_cert=directory / "client-cert.pem",
        client_chain=directory / "client-chain.pem",
        client_key=directory / "client-key.pem",
        crl=directory / "crl.pem",
    )
    root.write_cert(pki.root)
    intermediate.write_cert(pki.intermediate)
    server.write_cert(pki.server_cert)
    server.write_key(pki.server_key)
    client.write_cert(pki.client_cert)
    client.write_key(pki.client_key)
    testing.write_pem(pki.server_chain, server.cert_pem, intermediate.cert_pem)
    testing.write_pem(pki.client_chain, client.cert_pem, intermediate.cert_pem)
    # Random serials that match no issued certificate: a server must still search a 1,000-entry list.
    testing.write_pem(pki.crl, intermediate.crl(count=CRL_ENTRIES).pem, root.crl().pem)
    return pki

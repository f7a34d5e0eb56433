#!/usr/bin/env python3
"""Regenerate the committed demo fixtures in this folder (new keys every run).

    python certs-fixtures/regenerate.py

Writes the demo set to ``demo/`` with ``gtls.testing.demo_pki`` and copies it into the Genesys sample layout of
spec §3.3 E1/E2 (``ca/``, ``certs/``, ``crl/``). Long validity so the committed files stay usable: CAs 20 years,
leaves 10 years, CRLs 10 years to their next update. Private keys are written with mode 0o600.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from gtls.testing import demo_pki

HERE = Path(__file__).resolve().parent
YEAR = 365

#: Genesys sample file (relative to this folder) -> demo-set file it copies.
GENESYS_LAYOUT = {
    "ca/certauth.pem": "root-ca.pem",
    # E1: one Host certificate; the file holds leaf + intermediate so peers trusting only the root can verify it.
    "certs/hostcert.pem": "server-chain.pem",
    "certs/privkey.pem": "server-key.pem",
    # E2: server and client Hosts.
    "certs/servhostcert.pem": "server-chain.pem",
    "certs/servprivkey.pem": "server-key.pem",
    "certs/clthostcert.pem": "client-chain.pem",
    "certs/cltprivkey.pem": "client-key.pem",
    "crl/crllist.pem": "crl.pem",
}


def main() -> None:
    demo = demo_pki(
        HERE / "demo",
        server_names=("localhost", "server.gtls.test"),
        client_name="client.gtls.test",
        days=10 * YEAR,
        ca_days=20 * YEAR,
        crl_days=10 * YEAR,
    )
    for target, source in GENESYS_LAYOUT.items():
        path = HERE / target
        path.parent.mkdir(exist_ok=True)
        shutil.copyfile(demo.directory / source, path)
        if source.endswith("-key.pem"):
            path.chmod(0o600)
    for path in sorted([*demo.files.values(), *(HERE / t for t in GENESYS_LAYOUT)]):
        print(path.relative_to(HERE))


if __name__ == "__main__":
    main()

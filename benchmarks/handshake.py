#!/usr/bin/env python3
"""Server CPU per handshake, handshakes/s and latency p50/p99, gtls vs trio vs openssl s_server vs nginx.

    python benchmarks/handshake.py            # ECDSA/RSA, TLS 1.3/1.2, mutual, CRL, resumed: about 8 minutes
    python benchmarks/handshake.py --quick    # ECDSA TLS 1.3 simple and mutual, RSA TLS 1.2: under 2 minutes
    python benchmarks/handshake.py rsa-tls13-mutual-crl --rounds 5 --json out.json
"""

import sys

from _group import run_group

DEFAULT = ("ecdsa-tls13", "ecdsa-tls12", "rsa-tls13", "rsa-tls12", "ecdsa-tls13-mutual", "ecdsa-tls13-mutual-crl",
           "ecdsa-tls13-resumed", "ecdsa-tls12-resumed")
QUICK = ("ecdsa-tls13", "ecdsa-tls13-mutual", "rsa-tls12")

if __name__ == "__main__":
    sys.exit(run_group(DEFAULT, QUICK))

#!/usr/bin/env python3
"""Client connector CPU per handshake: gtls.open_tls_over_tcp_stream vs trio.open_ssl_over_tcp_stream.

Both connect to the same C server (nginx, or openssl s_server without nginx).

    python benchmarks/client_connector.py           # 3 rounds of 3 s each
    python benchmarks/client_connector.py --quick   # 2 rounds of 1 s
"""

import sys

from _group import run_group

if __name__ == "__main__":
    sys.exit(run_group(("client-connector",), ("client-connector",)))

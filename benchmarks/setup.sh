#!/bin/sh
# Install what the benchmark needs besides gtls: nginx-light (the C reference server), a C compiler and OpenSSL's
# headers (for the C bulk load client, gtls/bench/bulk_client.c), valgrind (benchmarks/breakdown.py cpu) and
# matplotlib (plots).
# Debian/Ubuntu; run as root. nginx is only started by the benchmark itself, on 127.0.0.1, with its own prefix.
set -eu
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y nginx-light
    # The package starts a system nginx on port 80; the benchmark does not use it.
    if command -v systemctl >/dev/null 2>&1; then systemctl disable --now nginx 2>/dev/null || true; fi
fi
if ! command -v cc >/dev/null 2>&1 || [ ! -f /usr/include/openssl/ssl.h ]; then
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y gcc libc6-dev libssl-dev
fi
if ! command -v valgrind >/dev/null 2>&1; then
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y valgrind
fi
python3 -m pip install -e "$(dirname "$0")/..[bench]"

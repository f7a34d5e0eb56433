"""How long a port's session-ticket key renewal holds up the event loop.

    python benchmarks/renewal_stall.py [--seconds S]

Serves a mutual-TLS port whose `trusted-ca` is the system's CA bundle (about 150 CAs, the costly part of building a
context again) plus a test root, with the key's lifetime cut to 0.5 s, and records the longest gap between 1 ms
sleeps of another task over S seconds (default 6; the serving loop looks at most once a second, so ~5 renewals).
A renewal built in the event loop shows as a gap of its build time; built in a worker thread, as a few ms at most
(the interpreter's switch interval, 5 ms).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import trio

from gtls import TLSOptions, TLSStream, _sessions, serve_tls_over_tcp
from gtls.testing import CA

SYSTEM_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def options(folder: Path) -> TLSOptions:
    root = CA.root("stall root")
    leaf = root.leaf("stall.test")
    bundle = folder / "ca.pem"
    bundle.write_bytes((SYSTEM_BUNDLE.read_bytes() if SYSTEM_BUNDLE.exists() else b"") + root.cert_pem)
    return TLSOptions.from_mapping({"certificate": str(leaf.write_cert(folder / "c.pem")),
                                    "certificate-key": str(leaf.write_key(folder / "k.pem")),
                                    "trusted-ca": str(bundle), "tls-mutual": "1"})


async def handler(stream: TLSStream) -> None:
    await stream.aclose()


async def measure(opts: TLSOptions, seconds: float) -> tuple[int, float]:
    """(renewals seen, longest gap in seconds between the ticker's wake-ups)."""
    longest = 0.0
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(lambda task_status: serve_tls_over_tcp(
            handler, 0, opts, host="127.0.0.1", task_status=task_status))
        compiled = listeners[0].context
        seen, renewals = compiled.ssl_context, 0
        last = trio.current_time()
        end = last + seconds
        while last < end:
            await trio.sleep(0.001)
            now = trio.current_time()
            longest, last = max(longest, now - last), now
            if compiled.ssl_context is not seen:
                seen, renewals = compiled.ssl_context, renewals + 1
        nursery.cancel_scope.cancel()
    return renewals, longest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=6.0)
    args = parser.parse_args()
    _sessions.TICKET_KEY_LIFETIME = 0.5  # type: ignore[misc,assignment]  # a benchmark's own process
    with tempfile.TemporaryDirectory() as folder:
        renewals, longest = trio.run(measure, options(Path(folder)), args.seconds)
    print(f"renewals {renewals}, longest event-loop gap {longest * 1000:.1f} ms")


if __name__ == "__main__":
    main()

"""``gtls bench [SCENARIO…] [--quick] [--json FILE]``: run scenarios, print the table, the targets and notes."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import shlex
import sys
import tempfile
from pathlib import Path

from . import scenarios
from .peers import ALL_PEERS, TrioPeer
from .progress import Progress
from .report import CLIENT_NOTE, Summary, check_targets, library_note, summarise, table, to_json
from .runner import QUICK, Config, Results, Runner


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gtls bench",
        description="Measure gtls serve side by side with trio's SSLStream, openssl s_server and nginx, interleaved "
        "in rounds on this machine. Primary metric: server CPU per handshake.",
        epilog="Scenarios: KEY-VERSION[-mutual][-crl][-resumed] (KEY ecdsa|rsa, VERSION tls13|tls12), "
        f"KEY-VERSION-stime (load by openssl s_time), bulk-16k, bulk-64k, idle-memory, client-connector. "
        f"Default: {' '.join(scenarios.DEFAULT)}. "
        f"With --quick: {' '.join(scenarios.QUICK)}.",
    )
    p.add_argument("scenario", nargs="*", help="scenarios to run (default: all, or the quick set with --quick)")
    p.add_argument("--quick", action="store_true", help="2 rounds of 1 s, smaller transfers: about 1–2 minutes")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE ('-' for stdout)")
    p.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    p.add_argument("--rounds", type=int, help="interleaved rounds per scenario")
    p.add_argument("--duration", type=float, help="seconds of load per handshake measurement")
    p.add_argument("--procs", type=int, help="load processes (handshake concurrency)")
    p.add_argument("--idle-count", type=int, help="connections held open for idle-memory")
    p.add_argument("--bulk-mib", type=int, help="MiB echoed per bulk measurement")
    p.add_argument("--bulk-client", choices=("c", "python"),
                   help="bulk load client: c (default; built with cc against the system OpenSSL, else python) or "
                   "python")
    p.add_argument("--peers", help="comma-separated subset of " + ",".join(peer.name for peer in ALL_PEERS))
    p.add_argument("--trio-libdir", metavar="DIR",
                   help="run trio's server and connector client with LD_LIBRARY_PATH=DIR, a folder holding another "
                   "OpenSSL 3's libssl.so.3 and libcrypto.so.3, to compare gtls and trio on the same OpenSSL")
    return p


def configure(args: argparse.Namespace) -> Config:
    config = QUICK if args.quick else Config()
    changes = {
        "rounds": args.rounds,
        "duration": args.duration,
        "connector_duration": args.duration,
        "procs": args.procs,
        "idle_count": args.idle_count,
        "bulk_total": args.bulk_mib << 20 if args.bulk_mib else None,
        "bulk_client": args.bulk_client,
    }
    config = dataclasses.replace(config, **{k: v for k, v in changes.items() if v is not None})
    if config.rounds < 1 or config.duration <= 0 or config.procs < 1 or config.idle_count < 1:
        raise ValueError("--rounds, --duration, --procs and --idle-count must be positive")
    return config


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    try:
        config = configure(args)
        chosen = [scenarios.parse(name) for name in args.scenario or (scenarios.QUICK if args.quick
                                                                      else scenarios.DEFAULT)]
    except ValueError as exc:
        print(f"gtls bench: {exc}", file=sys.stderr)
        return 2
    peers = [TrioPeer(args.trio_libdir) if peer.name == "trio" else peer for peer in ALL_PEERS]
    trio_openssl = next((peer.openssl_version() for peer in peers
                         if isinstance(peer, TrioPeer) and peer.libdir and peer.unavailable() is None), None)
    if args.peers:
        wanted = set(args.peers.split(","))
        unknown = wanted - {peer.name for peer in peers}
        if unknown:
            print(f"gtls bench: unknown peers {sorted(unknown)}", file=sys.stderr)
            return 2
        peers = [peer for peer in peers if peer.name in wanted]
    started = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    with tempfile.TemporaryDirectory(prefix="gtls-bench-") as workdir:
        progress = Progress(0)
        runner = Runner(config, Path(workdir), progress, peers)
        progress.total = sum(runner.steps(scenario) for scenario in chosen)
        results = runner.run(chosen)
        progress.finish()
    if not results.samples:
        print("gtls bench: nothing was measured", file=sys.stderr)
        return 1
    human = sys.stderr if args.json == "-" else sys.stdout  # with --json - stdout carries only the JSON
    print(table(results, markdown=args.markdown), file=human)
    print("\nTargets (gtls / other, medians of this run):", file=human)
    for target in check_targets(summaries_of(results)):
        print("  " + target.describe(), file=human)
    print(file=human)
    for note in [CLIENT_NOTE, *filter(None, [library_note(trio_openssl)]), *results.notes]:
        print("note: " + note, file=human)
    if args.json:
        command = "gtls bench " + shlex.join(argv)
        document = to_json(results, command, started, dataclasses.asdict(config), trio_openssl)
        text = json.dumps(document, indent=1, ensure_ascii=False)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n")
    return 0


def summaries_of(results: Results) -> list[Summary]:
    return summarise(results.samples)

"""Interleaved measurement: every peer of a scenario is started, then measured in rounds A B C D, B C D A, ….

Servers of a scenario stay up for all its rounds (idle servers cost no CPU), so drift on the shared machine hits
every peer alike; only idle-memory starts a fresh server per measurement, since freed memory is not given back.
A server's CPU is read from ``/proc`` before and after the load, and divided by the handshakes the load clients
completed (or the KiB they moved). Load processes run on the cores the server is not pinned to.
"""

from __future__ import annotations

import json
import re
import resource
import select
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .cclient import build_bulk_client
from .peers import ALL_PEERS, Peer, PeerUnavailable, RunningServer, TrioPeer, load_cores, pinned_to
from .pki import ScenarioPKI, make_pki
from .procstat import cpu_seconds, rss_bytes
from .progress import Progress
from .scenarios import Scenario, TLSSetup

SETTLE = 0.15  # let the server finish closing connections before its CPU is read
START_MARGIN = 0.5  # load processes start together this long after being spawned (Python start-up excluded)


@dataclass(frozen=True)
class Config:
    rounds: int = 3
    duration: float = 3.0  # seconds of load per handshake measurement
    procs: int = 4  # load processes (= handshake concurrency)
    bulk_total: int = 256 << 20  # bytes echoed per bulk measurement (CPU is read in 10 ms ticks)
    idle_count: int = 1000
    connector_duration: float = 3.0
    bulk_client: str = "c"  # "c": the C load client when it can be built (see cclient.py); "python": loadgen


QUICK = Config(rounds=2, duration=1.0, procs=2, bulk_total=64 << 20, idle_count=300, connector_duration=1.0)


@dataclass(frozen=True)
class Sample:
    scenario: str
    metric: str
    impl: str
    round: int
    value: float


@dataclass
class Results:
    samples: list[Sample] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, scenario: str, impl: str, round_: int, metrics: dict[str, float]) -> None:
        for metric, value in metrics.items():
            self.samples.append(Sample(scenario, metric, impl, round_, value))


def rotated(items: Sequence[str], by: int) -> list[str]:
    by %= max(1, len(items))
    return list(items[by:]) + list(items[:by])


def _run_json(argv: list[str], timeout: float, cores: set[int] | None = None,
              env: dict[str, str] | None = None) -> dict[str, Any]:
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=pinned_to(cores) if cores else None, env=env)
    try:
        out, err = process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(5)
    if process.returncode != 0 or not out.strip():
        last = err.strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"{argv[2]} failed ({process.returncode}): {last[0][:300]}")
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def _client_args(pki: ScenarioPKI, setup: TLSSetup, port: int) -> list[str]:
    args = ["--port", str(port), "--ca", str(pki.root), "--version", setup.version]
    if setup.mutual:
        args += ["--cert", str(pki.client_chain), "--key", str(pki.client_key)]
    return args


def _wait_ready(holder: subprocess.Popen[bytes]) -> None:
    """Wait (up to 2 min) for an idle-connection holder to report that its connections finished their handshakes."""
    assert holder.stdout is not None
    ready, _, _ = select.select([holder.stdout], [], [], 120)
    line = holder.stdout.readline() if ready else b""
    if line.strip() != b"ready":
        raise RuntimeError(f"idle client did not get ready: {line[:200]!r}")


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


class Runner:
    def __init__(self, config: Config, workdir: Path, progress: Progress, peers: Sequence[Peer] = ALL_PEERS) -> None:
        self.config = config
        self.workdir = workdir
        self.progress = progress
        self.results = Results()
        self.peers = [peer for peer in peers if self._usable(peer)]
        self._pkis: dict[str, ScenarioPKI] = {}
        self._bulk_client: Path | None | bool = False  # False: not built yet; None: use the Python client

    def _usable(self, peer: Peer) -> bool:
        reason = peer.unavailable()
        if reason:
            self._note(f"{peer.name}: skipped: {reason}")
        return reason is None

    def _note(self, text: str) -> None:
        if text not in self.results.notes:
            self.results.notes.append(text)
            self.progress.note(text)

    def pki(self, setup: TLSSetup) -> ScenarioPKI:
        if setup.key_type not in self._pkis:
            self._pkis[setup.key_type] = make_pki(self.workdir / f"pki-{setup.key_type}", setup.key_type)
        return self._pkis[setup.key_type]

    def steps(self, scenario: Scenario) -> int:
        """How many measurements ``scenario`` takes (for the progress display)."""
        if scenario.kind == "client-connector":
            return 2 * self.config.rounds
        if scenario.kind == "handshake":
            return len(self.peers) * self.config.rounds
        return sum(peer.echo for peer in self.peers) * self.config.rounds

    def run(self, scenarios: Sequence[Scenario]) -> Results:
        for scenario in scenarios:
            if scenario.kind == "handshake":
                self.handshake_scenario(scenario)
            elif scenario.kind == "bulk":
                self.bulk_scenario(scenario)
            elif scenario.kind == "idle-memory":
                self.idle_scenario(scenario)
            else:
                self.connector_scenario(scenario)
        return self.results

    # --- servers -------------------------------------------------------------------------------------------

    def start_servers(self, scenario: Scenario, peers: Sequence[Peer]) -> dict[str, RunningServer]:
        servers: dict[str, RunningServer] = {}
        for peer in peers:
            workdir = self.workdir / scenario.name
            workdir.mkdir(exist_ok=True)
            try:
                servers[peer.name] = peer.start(self.pki(scenario.tls), scenario.tls, workdir)
            except PeerUnavailable as exc:
                self._note(f"{scenario.name}: {peer.name} not measured: {exc}")
        return servers

    def _failed(self, scenario: Scenario, impl: str, exc: Exception) -> None:
        self._note(f"{scenario.name}: {impl}: measurement failed: {exc}")

    # --- handshakes ------------------------------------------------------------------------------------------

    def handshake_load(
        self, scenario: Scenario, server: RunningServer, duration: float, procs: int, check: bool = False
    ) -> dict[str, float]:
        pki, setup = self.pki(scenario.tls), scenario.tls
        start_at = time.time() + START_MARGIN
        argv = [sys.executable, "-m", "gtls.bench.loadgen", "handshake", *_client_args(pki, setup, server.port),
                "--duration", str(duration), "--start-at", f"{start_at:.3f}"]
        if scenario.resumed:
            argv.append("--resume")
        if check:
            argv.append("--check")
        pids = server.pids()
        cpu_before = cpu_seconds(pids)
        loaders = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                    preexec_fn=pinned_to(load_cores())) for _ in range(procs)]
        reports: list[dict[str, Any]] = []
        try:
            for loader in loaders:
                out, err = loader.communicate(timeout=duration + 60)
                if loader.returncode != 0 or not out.strip():
                    last = err.strip().splitlines()[-1:] or ["no output"]
                    raise RuntimeError(f"load client failed ({loader.returncode}): {last[0][:300]}")
                reports.append(json.loads(out))
        finally:
            for loader in loaders:
                if loader.poll() is None:
                    loader.kill()
                    loader.wait(5)
        time.sleep(SETTLE)
        server_cpu = cpu_seconds(pids) - cpu_before
        handshakes = sum(int(r["handshakes"]) for r in reports)
        failures = sum(int(r["failures"]) for r in reports)
        for report in reports:
            for error in report["errors"]:
                self._note(f"{scenario.name}: {server.impl}: client error: {error}")
        if handshakes == 0:
            raise RuntimeError("no handshake completed")
        latencies = [v for r in reports for v in r["latencies_ms"]]
        elapsed = max(float(r["elapsed"]) for r in reports)
        metrics = {
            "server_cpu_ms_per_handshake": 1000 * server_cpu / handshakes,
            "handshakes_per_s": handshakes / elapsed,
            "latency_p50_ms": percentile(latencies, 0.50),
            "latency_p99_ms": percentile(latencies, 0.99),
            "load_client_cpu_ms_per_handshake": 1000 * sum(float(r["cpu"]) for r in reports) / handshakes,
            "failed_handshakes": float(failures),
        }
        if scenario.resumed:
            metrics["resumed_pct"] = 100 * sum(int(r["reused"]) for r in reports) / handshakes
        return metrics

    def s_time_load(self, scenario: Scenario, server: RunningServer, duration: float, procs: int) -> dict[str, float]:
        """Load with ``openssl s_time -new`` processes; their CPU is read as this process's reaped children."""
        pki, setup = self.pki(scenario.tls), scenario.tls
        argv = ["openssl", "s_time", "-connect", f"127.0.0.1:{server.port}", "-new", "-time",
                str(max(1, round(duration))), "-CAfile", str(pki.root),
                "-tls1_3" if setup.version == "1.3" else "-tls1_2"]
        pids = server.pids()
        cpu_before = cpu_seconds(pids)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        loaders = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                    preexec_fn=pinned_to(load_cores())) for _ in range(procs)]
        handshakes = 0
        try:
            for loader in loaders:
                out, err = loader.communicate(timeout=duration + 60)
                found = re.search(r"(\d+) connections in \d+ real seconds", out)
                if loader.returncode != 0 or found is None:
                    raise RuntimeError(f"openssl s_time failed ({loader.returncode}): {(err or out).strip()[-200:]}")
                handshakes += int(found.group(1))
        finally:
            for loader in loaders:
                if loader.poll() is None:
                    loader.kill()
                    loader.wait(5)
        elapsed = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        time.sleep(SETTLE)
        server_cpu = cpu_seconds(pids) - cpu_before
        if handshakes == 0:
            raise RuntimeError("no handshake completed")
        client_cpu = (after.ru_utime + after.ru_stime) - (children.ru_utime + children.ru_stime)
        return {
            "server_cpu_ms_per_handshake": 1000 * server_cpu / handshakes,
            "handshakes_per_s": handshakes / elapsed,
            "load_client_cpu_ms_per_handshake": 1000 * client_cpu / handshakes,
        }

    def handshake_scenario(self, scenario: Scenario) -> None:
        servers = self.start_servers(scenario, self.peers)
        try:
            for impl, server in servers.items():  # warm up: imports, first-connection set-up, allocator growth
                try:
                    self.handshake_load(scenario, server, 0.3, 1, check=True)
                except (RuntimeError, subprocess.TimeoutExpired) as exc:
                    self._failed(scenario, impl, exc)
            for round_ in range(self.config.rounds):
                for impl in rotated(list(servers), round_):
                    self.progress.step(f"{scenario.name} round {round_ + 1}/{self.config.rounds}: {impl}")
                    try:
                        load = self.s_time_load if scenario.s_time else self.handshake_load
                        metrics = load(scenario, servers[impl], self.config.duration, self.config.procs)
                    except (RuntimeError, subprocess.TimeoutExpired) as exc:
                        self._failed(scenario, impl, exc)
                        continue
                    self.results.add(scenario.name, impl, round_, metrics)
        finally:
            for server in servers.values():
                server.stop()

    # --- bulk ------------------------------------------------------------------------------------------------

    def bulk_client(self) -> Path | None:
        """The C load client, built on first use; None means the Python load client (with a note saying why)."""
        if self._bulk_client is False:
            client, why = (None, "the Python load client was asked for (--bulk-client python)")
            if self.config.bulk_client == "c":
                client, why = build_bulk_client(self.workdir)
            self._bulk_client = client
            if client is None:
                self._note(f"bulk: Python load client ({why}); it can saturate before a fast server does")
            else:
                self._note("bulk: C load client (gtls/bench/bulk_client.c on the system OpenSSL), the same for "
                           "every server")
        return self._bulk_client if isinstance(self._bulk_client, Path) else None

    def bulk_once(self, scenario: Scenario, server: RunningServer) -> dict[str, float]:
        pki, setup = self.pki(scenario.tls), scenario.tls
        client = self.bulk_client()
        if client is not None:
            argv = [str(client), str(server.port), str(pki.root), setup.version, str(scenario.write_size),
                    str(self.config.bulk_total), "120"]
            if server.impl == "nginx":
                argv += ["--http", str(8 << 20)]
            if setup.mutual:
                argv += ["--cert", str(pki.client_chain), "--key", str(pki.client_key)]
        else:
            argv = [sys.executable, "-m", "gtls.bench.loadgen", "bulk", *_client_args(pki, setup, server.port),
                    "--write-size", str(scenario.write_size), "--total", str(self.config.bulk_total),
                    "--timeout", "120"]
            if server.impl == "nginx":
                argv.append("--http")
        pids = server.pids()
        cpu_before = cpu_seconds(pids)
        report = _run_json(argv, 180, load_cores())
        time.sleep(SETTLE)
        server_cpu = cpu_seconds(pids) - cpu_before
        moved = float(report["bytes"])
        return {
            "mb_per_s": moved / float(report["elapsed"]) / 1e6,
            "server_cpu_us_per_kib": 1e6 * server_cpu / (moved / 1024),
            "load_client_cpu_us_per_kib": 1e6 * float(report["cpu"]) / (moved / 1024),
        }

    def bulk_scenario(self, scenario: Scenario) -> None:
        servers = self.start_servers(scenario, [peer for peer in self.peers if peer.echo])
        try:
            for round_ in range(self.config.rounds):
                for impl in rotated(list(servers), round_):
                    self.progress.step(f"{scenario.name} round {round_ + 1}/{self.config.rounds}: {impl}")
                    try:
                        self.results.add(scenario.name, impl, round_, self.bulk_once(scenario, servers[impl]))
                    except (RuntimeError, subprocess.TimeoutExpired, ValueError) as exc:
                        self._failed(scenario, impl, exc)
        finally:
            for server in servers.values():
                server.stop()

    # --- idle memory -----------------------------------------------------------------------------------------

    def idle_once(self, scenario: Scenario, server: RunningServer) -> dict[str, float]:
        """RSS per idle connection, read as the cost of a second batch of connections held beside a first.

        The first batch reuses memory that the warm-up's handshakes freed, and how much it reuses depends on the
        warm-up and the interpreter (trio's first 1,000 connections on Python 3.13 looked 18 % cheaper than its
        next), so only the second batch measures what one more idle connection costs. The first stays in the JSON.
        """
        pki, setup = self.pki(scenario.tls), scenario.tls
        # Warm up first: lazy set-up is not per-connection memory.
        self.handshake_load(scenario, server, 0.2, 1, check=True)
        time.sleep(SETTLE)
        pids = server.pids()
        count = self.config.idle_count
        argv = [sys.executable, "-m", "gtls.bench.loadgen", "idle", *_client_args(pki, setup, server.port),
                "--count", str(count)]
        readings = [rss_bytes(pids)]
        holders: list[subprocess.Popen[bytes]] = []
        try:
            for _batch in range(2):
                holders.append(subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                                stderr=subprocess.PIPE, preexec_fn=pinned_to(load_cores())))
                _wait_ready(holders[-1])
                time.sleep(0.5)  # let the server finish post-handshake work (TLS 1.3 tickets)
                readings.append(rss_bytes(pids))
            for holder in holders:
                assert holder.stdin is not None
                holder.stdin.close()
                holder.wait(60)
        finally:
            for holder in holders:
                if holder.poll() is None:
                    holder.kill()
                    holder.wait(5)
        first, second = (readings[1] - readings[0]) / count / 1024, (readings[2] - readings[1]) / count / 1024
        return {"rss_kib_per_idle_connection": second, "rss_kib_per_idle_connection_first_batch": first}

    def idle_scenario(self, scenario: Scenario) -> None:
        peers = {peer.name: peer for peer in self.peers if peer.echo}
        for round_ in range(self.config.rounds):
            for impl in rotated(list(peers), round_):
                self.progress.step(f"{scenario.name} round {round_ + 1}/{self.config.rounds}: {impl}")
                servers = self.start_servers(scenario, [peers[impl]])
                try:
                    for server in servers.values():
                        self.results.add(scenario.name, impl, round_, self.idle_once(scenario, server))
                except (RuntimeError, subprocess.TimeoutExpired) as exc:
                    self._failed(scenario, impl, exc)
                finally:
                    for server in servers.values():
                        server.stop()

    # --- client connector ------------------------------------------------------------------------------------

    def connector_scenario(self, scenario: Scenario) -> None:
        # A C server answers, so the client is the only Python side; nginx when present, else s_server.
        by_name = {peer.name: peer for peer in self.peers}
        target = by_name.get("nginx") or by_name.get("openssl")
        if target is None:
            self._note(f"{scenario.name}: no C server to connect to; skipped")
            return
        servers = self.start_servers(scenario, [target])
        if not servers:
            return
        server = servers[target.name]
        self._note(f"{scenario.name}: both clients connect to {target.name}")
        try:
            for round_ in range(self.config.rounds):
                for impl in rotated(["gtls", "trio"], round_):
                    self.progress.step(f"{scenario.name} round {round_ + 1}/{self.config.rounds}: {impl} client")
                    argv = [sys.executable, "-m", "gtls.bench.connector", "--impl", impl, "--port", str(server.port),
                            "--ca", str(self.pki(scenario.tls).root), "--duration", str(self.config.connector_duration)]
                    trio_peer = by_name.get("trio")
                    env = trio_peer.env() if impl == "trio" and isinstance(trio_peer, TrioPeer) else None
                    try:
                        report = _run_json(argv, self.config.connector_duration + 60, load_cores(), env)
                    except (RuntimeError, subprocess.TimeoutExpired) as exc:
                        self._failed(scenario, f"{impl} client", exc)
                        continue
                    count = int(report["handshakes"])
                    self.results.add(scenario.name, impl, round_, {
                        "client_cpu_ms_per_handshake": 1000 * float(report["cpu"]) / max(1, count),
                        "client_handshakes_per_s": count / float(report["elapsed"]),
                    })
        finally:
            server.stop()

"""Summaries (median and min–max over rounds), ratios to gtls, the targets of issue 6, the table and the JSON."""

from __future__ import annotations

import os
import platform
import ssl
import statistics
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .runner import Results, Sample

IMPL_ORDER = ("gtls", "trio", "openssl", "nginx")
LOWER_IS_BETTER = {"server_cpu_ms_per_handshake", "latency_p50_ms", "latency_p99_ms", "server_cpu_us_per_kib",
                   "rss_kib_per_idle_connection", "rss_kib_per_idle_connection_first_batch",
                   "client_cpu_ms_per_handshake", "load_client_cpu_ms_per_handshake", "load_client_cpu_us_per_kib",
                   "failed_handshakes"}
# The metrics shown in the table, in order; others stay in the JSON.
SHOWN = ("server_cpu_ms_per_handshake", "handshakes_per_s", "latency_p50_ms", "latency_p99_ms",
         "load_client_cpu_ms_per_handshake", "resumed_pct", "failed_handshakes", "mb_per_s", "server_cpu_us_per_kib",
         "load_client_cpu_us_per_kib",
         "rss_kib_per_idle_connection", "client_cpu_ms_per_handshake", "client_handshakes_per_s")

CLIENT_NOTE = (
    "Handshakes per second are set by the load clients as much as by the server: a load client spends about as "
    "much CPU per handshake as a C server (see load_client_cpu_ms_per_handshake), so with one load core the "
    "client saturates first. Compare servers by server CPU per handshake."
)


@dataclass(frozen=True)
class Summary:
    scenario: str
    metric: str
    impl: str
    median: float
    low: float
    high: float
    rounds: int


@dataclass(frozen=True)
class Target:
    scenario: str
    metric: str
    other: str
    limit: float  # gtls / other must be <= limit (lower is better) or >= limit (higher is better)
    ratio: float | None = None

    @property
    def higher_is_better(self) -> bool:
        return self.metric not in LOWER_IS_BETTER

    @property
    def met(self) -> bool | None:
        if self.ratio is None:
            return None
        return self.ratio >= self.limit if self.higher_is_better else self.ratio <= self.limit

    def describe(self) -> str:
        sign = "≥" if self.higher_is_better else "≤"
        wanted = f"{self.scenario} {self.metric}: gtls {sign} {self.limit:g} × {self.other}"
        if self.ratio is None:
            return f"n/a   {wanted} (not measured)"
        return f"{'met ' if self.met else 'MISS'}  {wanted}: {self.ratio:.2f}"


TARGETS = (
    Target("ecdsa-tls13", "server_cpu_ms_per_handshake", "trio", 0.55),
    Target("ecdsa-tls13", "server_cpu_ms_per_handshake", "nginx", 1.2),
    Target("ecdsa-tls13-mutual", "server_cpu_ms_per_handshake", "nginx", 0.9),
    Target("bulk-16k", "mb_per_s", "trio", 2.0),
    Target("bulk-16k", "mb_per_s", "nginx", 0.75),
    Target("idle-memory", "rss_kib_per_idle_connection", "trio", 1.0),
    Target("client-connector", "client_cpu_ms_per_handshake", "trio", 0.7),
)


def summarise(samples: list[Sample]) -> list[Summary]:
    groups: dict[tuple[str, str, str], list[float]] = {}
    for sample in samples:
        groups.setdefault((sample.scenario, sample.metric, sample.impl), []).append(sample.value)
    return [Summary(scenario, metric, impl, statistics.median(values), min(values), max(values), len(values))
            for (scenario, metric, impl), values in groups.items()]


def ratios(summaries: list[Summary]) -> dict[tuple[str, str, str], float]:
    """gtls median / other median per (scenario, metric, other)."""
    medians = {(s.scenario, s.metric, s.impl): s.median for s in summaries}
    result = {}
    for (scenario, metric, impl), value in medians.items():
        base = medians.get((scenario, metric, "gtls"))
        if impl != "gtls" and base is not None and value > 0:
            result[(scenario, metric, impl)] = base / value
    return result


def check_targets(summaries: list[Summary]) -> list[Target]:
    found = ratios(summaries)
    return [Target(t.scenario, t.metric, t.other, t.limit, found.get((t.scenario, t.metric, t.other)))
            for t in TARGETS]


def _number(value: float) -> str:
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}" if value >= 0.01 else f"{value:.2g}"


def table(results: Results, *, markdown: bool = False) -> str:
    """Implementations as columns (median [min–max]), then gtls's ratio to each other implementation."""
    summaries = summarise(results.samples)
    found = ratios(summaries)
    cell = {(s.scenario, s.metric, s.impl): s for s in summaries}
    impls = [impl for impl in IMPL_ORDER if any(s.impl == impl for s in summaries)]
    others = [impl for impl in impls if impl != "gtls"]
    header = ["scenario", "metric", *impls, *(f"gtls/{impl}" for impl in others)]
    rows: list[list[str]] = []
    scenarios = list(dict.fromkeys(s.scenario for s in results.samples))
    for scenario in scenarios:
        for metric in SHOWN:
            if not any((scenario, metric, impl) in cell for impl in impls):
                continue
            row = [scenario, metric]
            for impl in impls:
                s = cell.get((scenario, metric, impl))
                row.append(f"{_number(s.median)} [{_number(s.low)}–{_number(s.high)}]" if s else "–")
            for impl in others:
                ratio = found.get((scenario, metric, impl))
                row.append(f"{ratio:.2f}" if ratio is not None else "–")
            rows.append(row)
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header, *rows])


def gtls_openssl() -> str:
    """The OpenSSL gtls runs on: pyOpenSSL uses the copy inside the ``cryptography`` wheel, not the system's."""
    from OpenSSL import SSL

    version: bytes = SSL.OpenSSL_version(SSL.OPENSSL_VERSION)
    return version.decode()


def library_note(trio_openssl: str | None = None) -> str | None:
    """Say so when gtls and the peers run on different OpenSSL builds: ratios then compare libraries too.
    ``trio_openssl``: the OpenSSL trio was moved to with ``--trio-libdir`` (None: the system's, like the others)."""
    ours, theirs = gtls_openssl(), ssl.OPENSSL_VERSION
    if trio_openssl is not None:
        return (
            f"gtls runs on {ours} (bundled with the cryptography wheel); trio (Python's ssl, --trio-libdir) on "
            f"{trio_openssl}; openssl s_server and nginx on the system's {theirs}. gtls / trio compares the "
            "runtimes on the same OpenSSL series where the first two words agree; the other ratios compare "
            "libraries too."
        )
    if ours.split()[:2] == theirs.split()[:2]:
        return None
    return (
        f"gtls runs on {ours} (bundled with the cryptography wheel); trio (Python's ssl), openssl s_server and nginx "
        f"run on the system's {theirs}. Ratios compare the libraries as well as the servers: a newer OpenSSL can "
        "make certificate parsing and verification (mutual TLS, CRLs) markedly cheaper."
    )


def machine() -> dict[str, str]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        openssl_cli = subprocess.run(["openssl", "version"], capture_output=True, text=True, timeout=10).stdout.strip()
    except OSError:
        openssl_cli = "missing"
    try:
        nginx = subprocess.run(["nginx", "-v"], capture_output=True, text=True, timeout=10).stderr.strip()
    except OSError:
        nginx = "missing"
    return {
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "python_ssl": ssl.OPENSSL_VERSION,
        "gtls_openssl": gtls_openssl(),
        "openssl_cli": openssl_cli,
        "nginx": nginx,
    }


def to_json(results: Results, command: str, date: str, config: dict[str, Any],
            trio_openssl: str | None = None) -> dict[str, Any]:
    summaries = summarise(results.samples)
    info = machine()
    if trio_openssl is not None:
        info["trio_openssl"] = trio_openssl
    return {
        "command": command,
        "date": date,
        "machine": info,
        "config": config,
        "notes": [CLIENT_NOTE, *filter(None, [library_note(trio_openssl)]), *results.notes],
        "summary": [asdict(s) for s in summaries],
        "ratios_to_gtls": [{"scenario": k[0], "metric": k[1], "other": k[2], "gtls_over_other": v}
                           for k, v in ratios(summaries).items()],
        "targets": [{**asdict(t), "met": t.met} for t in check_targets(summaries)],
        "samples": [asdict(s) for s in results.samples],
    }


def results_from_json(document: dict[str, Any]) -> Results:
    results = Results(notes=list(document.get("notes", [])))
    results.samples = [Sample(**sample) for sample in document["samples"]]
    return results


def markdown_report(document: dict[str, Any]) -> str:
    """The README's results section for a ``--json`` document: command, date, machine, table, targets, notes."""
    results = results_from_json(document)
    info = document["machine"]
    lines = [
        f"Command: `{document['command']}`  ",
        f"Date: {document['date']}  ",
        f"Machine: {info['nproc']} CPUs ({info['cpu']}), Linux {info['kernel']}, Python {info['python']} "
        f"(ssl: {info['python_ssl']}), gtls/pyOpenSSL: {info.get('gtls_openssl', '?')}, "
        + (f"trio (--trio-libdir): {info['trio_openssl']}, " if "trio_openssl" in info else "")
        + f"CLI: {info['openssl_cli']}, {info.get('nginx', 'nginx missing')}",
        "",
        "Each cell: median [min–max] over the interleaved rounds; `gtls/X` = gtls median / X median.",
        "",
        table(results, markdown=True),
        "",
        "Targets (issue 6), gtls / other in this run:",
        "",
    ]
    for target in check_targets(summarise(results.samples)):
        lines.append(f"- {target.describe()}")
    lines += ["", *(f"- {note}" for note in results.notes)]
    return "\n".join(lines) + "\n"

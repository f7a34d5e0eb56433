"""Smoke test of ``gtls bench``: the smallest quick scenario runs end to end and its output is well formed.

Nothing here checks a timing: the figures only have to be present, positive and consistent with each other.
"""

from __future__ import annotations

import io
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gtls.bench import scenarios
from gtls.bench.progress import Progress
from gtls.bench.report import check_targets, ratios, summarise, table
from gtls.bench.runner import Results, Sample, percentile, rotated


def test_quick_smallest_scenario_end_to_end(tmp_path: Path) -> None:
    out_file = tmp_path / "bench.json"
    argv = [sys.executable, "-m", "gtls", "bench", scenarios.SMALLEST, "--quick", "--rounds", "1",
            "--duration", "0.5", "--procs", "1", "--json", str(out_file)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    document = json.loads(out_file.read_text())

    measured = {s["impl"] for s in document["summary"] if s["metric"] == "server_cpu_ms_per_handshake"}
    assert {"gtls", "trio", "openssl"} <= measured, document["notes"]
    for summary in document["summary"]:
        assert summary["scenario"] == scenarios.SMALLEST
        assert summary["rounds"] == 1
        assert math.isfinite(summary["median"]) and summary["low"] <= summary["median"] <= summary["high"]
        if summary["metric"] == "failed_handshakes":
            assert summary["median"] == 0, document["notes"]
        else:
            assert summary["median"] > 0, summary
    p50 = {s["impl"]: s["median"] for s in document["summary"] if s["metric"] == "latency_p50_ms"}
    p99 = {s["impl"]: s["median"] for s in document["summary"] if s["metric"] == "latency_p99_ms"}
    assert all(p50[impl] <= p99[impl] for impl in p50)
    assert {r["other"] for r in document["ratios_to_gtls"]} == measured - {"gtls"}
    assert {t["scenario"] for t in document["targets"]} >= {"ecdsa-tls13", "bulk-16k", "client-connector"}
    assert set(document["machine"]) >= {"nproc", "cpu", "kernel", "python", "openssl_cli"}
    assert document["command"].startswith("gtls bench ecdsa-tls13")
    # The table has one column per implementation and gtls's ratio to each other one.
    header = done.stdout.splitlines()[0].split()
    assert header[:3] == ["scenario", "metric", "gtls"] and "gtls/trio" in header
    assert "server CPU per handshake" in done.stdout


def test_idle_memory_reports_both_batches(tmp_path: Path) -> None:
    # The target compares the second batch of idle connections (what one more costs); the first, which reuses the
    # memory the warm-up freed, stays in the JSON.
    out_file = tmp_path / "bench.json"
    argv = [sys.executable, "-m", "gtls", "bench", "idle-memory", "--rounds", "1", "--idle-count", "60",
            "--peers", "gtls,trio", "--json", str(out_file)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    document = json.loads(out_file.read_text())
    figures = {(s["impl"], s["metric"]): s["median"] for s in document["summary"]}
    for impl in ("gtls", "trio"):
        # An idle TLS connection holds kilobytes of OpenSSL state; a figure outside 1-200 KiB is a broken read. A
        # small first batch can fit wholly in memory the warm-up freed, so it need only be there.
        assert 1 < figures[impl, "rss_kib_per_idle_connection"] < 200, (impl, figures)
        assert math.isfinite(figures[impl, "rss_kib_per_idle_connection_first_batch"]), (impl, figures)
    target = next(t for t in document["targets"] if t["scenario"] == "idle-memory")
    assert target["ratio"] == pytest.approx(figures["gtls", "rss_kib_per_idle_connection"]
                                            / figures["trio", "rss_kib_per_idle_connection"], rel=0.01)


def _system_libssl_dir(tmp_path: Path) -> Path:
    """A folder with ``libssl.so.3``/``libcrypto.so.3`` linked to the ones Python's ``ssl`` loads now."""
    import ssl  # noqa: F401  (loaded, so its libraries show in /proc/self/maps)

    maps = Path("/proc/self/maps").read_text().splitlines()
    found = {Path(line.split()[-1]).name: line.split()[-1] for line in maps
             if line.split()[-1].startswith("/") and ("libssl.so.3" in line or "libcrypto.so.3" in line)}
    if {"libssl.so.3", "libcrypto.so.3"} - set(found):
        pytest.skip("Python's ssl does not load a libssl.so.3 here")
    folder = tmp_path / "openssl"
    folder.mkdir()
    for name, target in found.items():
        (folder / name).symlink_to(target)
    return folder


def _gtls_and_trio_with_libdir(tmp_path: Path, libdir: Path) -> tuple[dict[str, Any], set[str]]:
    """One quick round of the smallest scenario with gtls and trio, trio on ``libdir``: the JSON document and the
    servers that were measured."""
    out_file = tmp_path / "bench.json"
    argv = [sys.executable, "-m", "gtls", "bench", scenarios.SMALLEST, "--quick", "--rounds", "1", "--duration",
            "0.5", "--procs", "1", "--peers", "gtls,trio", "--trio-libdir", str(libdir), "--json", str(out_file)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    document: dict[str, Any] = json.loads(out_file.read_text())
    return document, {s["impl"] for s in document["summary"] if s["metric"] == "server_cpu_ms_per_handshake"}


def test_trio_libdir_moves_trio_and_says_so(tmp_path: Path) -> None:
    """--trio-libdir reaches trio's server (it serves) and is named in the notes and the machine record."""
    document, measured = _gtls_and_trio_with_libdir(tmp_path, _system_libssl_dir(tmp_path))
    assert measured == {"gtls", "trio"}, document["notes"]
    assert document["machine"]["trio_openssl"].startswith("OpenSSL 3")
    assert any("--trio-libdir" in note for note in document["notes"])


def test_trio_libdir_without_libssl_leaves_trio_out(tmp_path: Path) -> None:
    from gtls.bench.peers import TrioPeer

    assert "no libssl.so.3" in (TrioPeer(str(tmp_path)).unavailable() or "")
    assert TrioPeer().unavailable() is None and TrioPeer().env() is None


def test_a_broken_trio_libdir_breaks_only_trio(tmp_path: Path) -> None:
    """The folder really is what trio's processes load: unusable libraries there stop trio, not the run."""
    libdir = tmp_path / "broken"
    libdir.mkdir()
    for name in ("libssl.so.3", "libcrypto.so.3"):
        (libdir / name).write_bytes(b"not a library")
    document, measured = _gtls_and_trio_with_libdir(tmp_path, libdir)
    assert measured == {"gtls"}
    assert any(note.startswith(f"{scenarios.SMALLEST}: trio not measured: trio exited") and "libssl.so.3" in note
               for note in document["notes"]), document["notes"]


@pytest.mark.parametrize("name", [*scenarios.DEFAULT, "rsa-tls12-mutual-crl-resumed"])
def test_scenario_names_parse(name: str) -> None:
    assert scenarios.parse(name).name == name


@pytest.mark.parametrize("name", ["ecdsa", "dsa-tls13", "ecdsa-tls11", "ecdsa-tls13-crl", "ecdsa-tls13-resumed-mutual",
                                  "ecdsa-tls13-mutual-mutual", "bulk-32k", "ecdsa-tls13-mutual-stime",
                                  "rsa-tls12-resumed-stime"])
def test_bad_scenario_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="unknown scenario"):
        scenarios.parse(name)



@pytest.mark.parametrize("client", ["c", "python"])
def test_bulk_with_each_load_client(tmp_path: Path, client: str) -> None:
    """The bulk scenario runs with the C load client (built with cc; the Python one with a note where it cannot be
    built) and with the Python one, and both move every byte through both servers."""
    from gtls.bench.cclient import build_bulk_client

    out_file = tmp_path / "bulk.json"
    argv = [sys.executable, "-m", "gtls", "bench", "bulk-16k", "--quick", "--rounds", "1", "--bulk-mib", "8",
            "--peers", "gtls,trio", "--bulk-client", client, "--json", str(out_file)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    document = json.loads(out_file.read_text())
    rates = {s["impl"]: s["median"] for s in document["summary"] if s["metric"] == "mb_per_s"}
    assert set(rates) == {"gtls", "trio"} and all(rate > 0 for rate in rates.values()), document["notes"]
    built, why = build_bulk_client(tmp_path) if client == "c" else (None, "")
    expected = "bulk: C load client" if built is not None else "bulk: Python load client"
    assert any(note.startswith(expected) for note in document["notes"]), (why, document["notes"])

def test_scenario_settings() -> None:
    scenario = scenarios.parse("rsa-tls12-mutual-crl-resumed")
    assert (scenario.tls.key_type, scenario.tls.version, scenario.tls.mutual, scenario.tls.crl) == ("rsa", "1.2",
                                                                                                    True, True)
    assert scenario.resumed and scenario.kind == "handshake"
    assert scenarios.parse("bulk-64k").write_size == 65536
    assert scenarios.parse("rsa-tls13-stime").s_time and not scenarios.parse("rsa-tls13").s_time


def test_rounds_rotate_the_order() -> None:
    assert [rotated("ABC", r) for r in range(4)] == [list("ABC"), list("BCA"), list("CAB"), list("ABC")]


def test_percentile() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 51.0 and percentile(values, 0.99) == 100.0 and percentile([3.0], 0.99) == 3.0


def _results() -> Results:
    results = Results()
    for round_, (gtls, trio) in enumerate([(1.0, 4.0), (2.0, 2.0), (3.0, 3.0)]):
        results.add("ecdsa-tls13", "gtls", round_, {"server_cpu_ms_per_handshake": gtls})
        results.add("ecdsa-tls13", "trio", round_, {"server_cpu_ms_per_handshake": trio})
    results.samples.append(Sample("bulk-16k", "mb_per_s", "gtls", 0, 300.0))
    results.samples.append(Sample("bulk-16k", "mb_per_s", "trio", 0, 100.0))
    return results


def test_summary_ratios_and_targets() -> None:
    summaries = summarise(_results().samples)
    gtls = next(s for s in summaries if s.impl == "gtls" and s.metric == "server_cpu_ms_per_handshake")
    assert (gtls.median, gtls.low, gtls.high, gtls.rounds) == (2.0, 1.0, 3.0, 3)
    assert ratios(summaries)[("ecdsa-tls13", "server_cpu_ms_per_handshake", "trio")] == pytest.approx(2 / 3)
    targets = {(t.scenario, t.metric, t.other): t for t in check_targets(summaries)}
    assert targets[("ecdsa-tls13", "server_cpu_ms_per_handshake", "trio")].met is False  # 0.67 > 0.55
    assert targets[("bulk-16k", "mb_per_s", "trio")].met is True  # 3.0 >= 2
    assert targets[("idle-memory", "rss_kib_per_idle_connection", "trio")].met is None
    assert "MISS" in targets[("ecdsa-tls13", "server_cpu_ms_per_handshake", "trio")].describe()


def test_table_layout() -> None:
    text = table(_results())
    lines = text.splitlines()
    assert lines[0].split() == ["scenario", "metric", "gtls", "trio", "gtls/trio"]
    assert "2 [1–3]" in lines[1] and lines[1].endswith("0.67")
    markdown = table(_results(), markdown=True).splitlines()
    assert markdown[0].startswith("| scenario |") and markdown[1].startswith("|---|")


def test_progress_plain_lines_when_not_a_tty() -> None:
    stream = io.StringIO()
    progress = Progress(2, stream)
    progress.step("first")
    progress.note("a note")
    progress.step("second")
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("[1/2") and lines[0].endswith("first")
    assert lines[1] == "a note" and lines[2].startswith("[2/2")
    assert "\r" not in stream.getvalue()

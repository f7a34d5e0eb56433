"""Soak (issue #7 part 2), out of the default run: ``python3 -m pytest -m soak`` (about 2 minutes on 2 cores).

10,000 sequential handshakes against ``gtls serve`` for each of: a plain server, mutual TLS, and resumed sessions
(TLS 1.3 tickets). The server's descriptors and RSS are sampled every 1,000 handshakes: descriptors must be back to
the idle baseline at every sample, and RSS must show no trend after the first 2,000 (warm-up: caches, allocator
arenas): the last sample may exceed the warm-up sample by at most SOAK_GROWTH_KIB, and the second half of the run
may not grow more than the first half plus a margin.
"""

from __future__ import annotations

import pytest

from tests.loadtools import Samples, client_context, fd_count, sequential_handshakes, serve_args
from tests.peers import PKI, gtls_serve, write_pki

pytestmark = pytest.mark.soak

HANDSHAKES = 10_000
EVERY = 1_000
WARM_UP_SAMPLE = 1  # index of the sample after 2,000 handshakes
#: A leak of 1 KiB per handshake would add ~8 MiB over the 8,000 handshakes after warm-up; allow half of that.
SOAK_GROWTH_KIB = 4 * 1024


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return write_pki(tmp_path_factory.mktemp("soak-pki"))


def soak(pki: PKI, *, mutual: bool = False, resume: bool = False) -> Samples:
    with gtls_serve(*serve_args(pki, "--quiet", mutual=mutual)) as server:
        pid = server.process.pid
        baseline = fd_count(pid)
        samples = sequential_handshakes(server.port, client_context(pki, with_cert=mutual), HANDSHAKES, pid=pid,
                                        sample_every=EVERY, fd_target=baseline, resume=resume)
        assert server.process.poll() is None
    print(f"soak mutual={mutual} resume={resume}: {samples.describe()}")  # the numbers, shown with pytest -s
    assert len(samples.points) == HANDSHAKES // EVERY
    assert [fds for _, fds, _ in samples.points] == [baseline] * len(samples.points), samples.describe()
    assert samples.rss_growth(WARM_UP_SAMPLE) < SOAK_GROWTH_KIB, samples.describe()
    # No trend: the second half grows no more than the first half did, give or take 1 MiB of allocator noise.
    rss = [kib for _, _, kib in samples.points]
    middle = len(rss) // 2
    assert rss[-1] - rss[middle] <= max(0, rss[middle] - rss[WARM_UP_SAMPLE]) + 1024, samples.describe()
    return samples


def test_soak_plain_handshakes(pki: PKI) -> None:
    soak(pki)


def test_soak_mutual_tls_handshakes(pki: PKI) -> None:
    soak(pki, mutual=True)


def test_soak_resumed_sessions(pki: PKI) -> None:
    samples = soak(pki, resume=True)
    # Every connection but the first offers the previous one's ticket; nearly all must resume.
    assert samples.reused >= HANDSHAKES * 0.99, samples.reused

"""Fixtures shared by several test modules (helpers live in ``tests/peers.py``)."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from gtls.testing import DemoPKI, demo_pki
from tests.peers import copy_fixtures


@pytest.fixture(autouse=True)
def _gtls_logging_restored() -> Iterator[None]:
    """A test that runs a gtls command in-process (``gtls.cli.main``) routes the ``gtls`` logger to the stderr pytest
    captured for it, and stops its propagation: later tests' warnings then went to a closed file and never reached
    ``caplog`` (a test of logged-once warnings failed, depending on the order the files ran in)."""
    package = logging.getLogger("gtls")
    saved = (list(package.handlers), package.level, package.propagate)
    yield
    package.handlers[:], package.propagate = saved[0], saved[2]
    package.setLevel(saved[1])


@pytest.fixture(scope="session")
def fixtures(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``certs-fixtures/`` copied with private keys at 0600 (read-only use: tests that change files copy again)."""
    return copy_fixtures(tmp_path_factory.mktemp("fixtures"))


@pytest.fixture(scope="session")
def localhost_demo(tmp_path_factory: pytest.TempPathFactory) -> DemoPKI:
    """The demo PKI with a server certificate for ``localhost`` only."""
    return demo_pki(tmp_path_factory.mktemp("demo-localhost"), server_names=("localhost",))


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A connected pair of non-blocking Unix stream sockets."""
    left, right = socket.socketpair()
    left.setblocking(False)
    right.setblocking(False)
    yield left, right
    left.close()
    right.close()

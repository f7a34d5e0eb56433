"""The socket-bound driver's rule for two tasks waiting on one socket in the same direction.

trio lets one task per direction wait on a socket; the second one parks behind the first and both retry their TLS
step when the first wakes. ``TLSStream.receive_some`` takes the read wait in its own frame (``claim_read`` /
``release_read``), so a task using ``wait`` must still park behind it. Each test runs with read waits through trio
and through a poller (``gtls._poller``). Real sockets (a connected socketpair)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
import trio

from gtls._poller import Poller
from gtls._socket_driver import SocketDriver
from gtls.engine import WANT_READ, WANT_WRITE

MakeDriver = Callable[[socket.socket], SocketDriver]


@asynccontextmanager
async def drivers(mode: str) -> AsyncIterator[MakeDriver]:
    """Makes drivers whose read waits go through trio, or through a running poller."""
    if mode == "trio":
        yield SocketDriver
        return
    async with trio.open_nursery() as nursery:
        poller = Poller()
        nursery.start_soon(poller.run)
        yield lambda sock: SocketDriver(sock, poller)
        nursery.cancel_scope.cancel()


modes = pytest.mark.parametrize("mode", ["trio", "poller"])


@modes
async def test_wait_parks_behind_a_claimed_read_and_wakes_with_it(
    pair: tuple[socket.socket, socket.socket], mode: str
) -> None:
    async with drivers(mode) as make:
        await _parks_behind_a_claimed_read(pair, make, trio_waits=mode == "trio")


async def _parks_behind_a_claimed_read(pair: tuple[socket.socket, socket.socket], make: MakeDriver, *,
                                       trio_waits: bool) -> None:
    sock, peer = pair
    driver = make(sock)
    order: list[str] = []

    async def claimed_reader() -> None:
        assert driver.claim_read()
        try:
            await driver.readable()
        finally:
            driver.release_read()
        order.append("claimed")

    async def second_reader() -> None:
        await driver.wait(WANT_READ)
        order.append("parked")

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(claimed_reader)
            await trio.testing.wait_all_tasks_blocked()
            assert not driver.claim_read()  # the claim is held: a second claim is refused
            # A wait through trio needs trio told when the socket closes; one in the poller is woken by closing().
            assert driver.waiting is trio_waits
            nursery.start_soon(second_reader)
            await trio.testing.wait_all_tasks_blocked()
            assert order == []  # both wait: neither trio's BusyResourceError nor a spin
            peer.send(b"x")
    assert order == ["claimed", "parked"]
    assert not driver.waiting and driver.claim_read()  # released: the next reader takes it
    driver.release_read()


@modes
async def test_release_after_cancellation_frees_the_claim(pair: tuple[socket.socket, socket.socket], mode: str) -> None:
    sock, peer = pair
    async with drivers(mode) as make:
        driver = make(sock)
        with trio.move_on_after(0.05) as first:
            await driver.wait(WANT_READ)  # takes the claim itself, and must give it back when cancelled
        assert first.cancelled_caught and not driver.waiting
        with trio.move_on_after(0.05) as scope:
            await driver.wait(WANT_READ)  # would park forever if the cancelled claim were still held
        assert scope.cancelled_caught and not driver.waiting
        peer.send(b"x")
        with trio.fail_after(5):  # and a wait after the cancellations still wakes
            await driver.wait(WANT_READ)


async def test_two_writers_both_resume_when_the_socket_drains(pair: tuple[socket.socket, socket.socket]) -> None:
    sock, peer = pair
    driver = SocketDriver(sock)
    filled = 0
    while True:  # fill the send buffer so the socket stops being writable (bounded by the kernel's buffer sizes)
        try:
            filled += sock.send(b"\0" * 65536)
        except BlockingIOError:
            break
        assert filled < 64 << 20
    resumed: list[int] = []

    async def writer(number: int) -> None:
        await driver.wait(WANT_WRITE)
        resumed.append(number)

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer, 1)
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(writer, 2)
            await trio.testing.wait_all_tasks_blocked()
            assert resumed == []
            drained = 0
            while drained < filled:
                try:
                    drained += len(peer.recv(1 << 20))
                except BlockingIOError:
                    await trio.sleep(0.01)
    assert sorted(resumed) == [1, 2]
    assert not driver.waiting

"""The serving loop's edge-triggered poller (``gtls._poller``): no wake-up lost, none needed twice, closed sockets
and a stopped server handled, and idle connections that hold no trio wait. Real sockets: socketpairs for the
driver, a gtls server and Python ``ssl`` clients over 127.0.0.1 end to end."""

from __future__ import annotations

import os
import select
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing

from gtls import TLSStream, serve_tls_over_tcp
from gtls._poller import AVAILABLE, Poller
from gtls._socket_driver import SocketDriver
from gtls.engine import WANT_READ
from tests.peers import PKI, write_pki

Handler = Callable[[TLSStream], Awaitable[object]]

pytestmark = pytest.mark.skipif(not AVAILABLE, reason="the poller needs epoll (Linux)")


@asynccontextmanager
async def running() -> AsyncIterator[tuple[Poller, trio.Nursery]]:
    async with trio.open_nursery() as nursery:
        poller = Poller()
        nursery.start_soon(poller.run)
        yield poller, nursery
        nursery.cancel_scope.cancel()


def drain(sock: socket.socket) -> None:
    while True:
        try:
            if not sock.recv(65536):
                return
        except BlockingIOError:
            return


async def test_data_that_came_while_nobody_waited_is_not_waited_for(pair: tuple[socket.socket, socket.socket]) -> None:
    """Edge-triggered: the kernel reports new data once. Data arriving between two waits must not leave the next
    wait parked forever; after that retry, a wait parks again until more data comes."""
    sock, peer = pair
    async with running() as (poller, _):
        driver = SocketDriver(sock, poller)
        with trio.fail_after(5):
            peer.send(b"first")
            await driver.wait(WANT_READ)  # joins the set; data already there is reported at once
            drain(sock)
            peer.send(b"second")  # nobody waits now
            await trio.testing.wait_all_tasks_blocked()  # the poller has seen the edge
            await driver.wait(WANT_READ)  # remembered: returns without new data
            drain(sock)
        with trio.move_on_after(0.1) as idle:
            await driver.wait(WANT_READ)  # nothing new: parks
        assert idle.cancelled_caught
        peer.send(b"third")
        with trio.fail_after(5):
            await driver.wait(WANT_READ)


async def test_closing_wakes_a_parked_reader_with_closed_resource_error(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    sock, _ = pair
    async with running() as (poller, nursery):
        driver = SocketDriver(sock, poller)
        outcome: list[BaseException] = []

        async def reader() -> None:
            try:
                await driver.wait(WANT_READ)
            except trio.ClosedResourceError as exc:
                outcome.append(exc)

        nursery.start_soon(reader)
        await trio.testing.wait_all_tasks_blocked()
        driver.closing()
        with trio.fail_after(5):
            while not outcome:
                await trio.sleep(0.001)
        assert not driver.waiting


async def test_a_stopped_poller_hands_its_readers_to_trio(pair: tuple[socket.socket, socket.socket]) -> None:
    """A connection can outlive its server (``handler_nursery``): its reader wakes when the poller stops, retries,
    and from then on waits through trio."""
    sock, peer = pair
    woke = trio.Event()
    async with trio.open_nursery() as outer:
        async with trio.open_nursery() as server:
            poller = Poller()
            server.start_soon(poller.run)
            driver = SocketDriver(sock, poller)

            async def reader() -> None:
                await driver.wait(WANT_READ)  # woken by the stop: the caller would retry OpenSSL here
                await driver.wait(WANT_READ)  # now through trio
                woke.set()

            outer.start_soon(reader)
            await trio.testing.wait_all_tasks_blocked()
            server.cancel_scope.cancel()
        await trio.testing.wait_all_tasks_blocked()
        assert not woke.is_set()
        peer.send(b"x")
        with trio.fail_after(5):
            await woke.wait()


async def test_leaving_the_poller_keeps_reads_working(pair: tuple[socket.socket, socket.socket]) -> None:
    """``transport_stream`` hands the socket to trio: a parked reader is woken and later waits go through trio."""
    sock, peer = pair
    async with running() as (poller, nursery):
        driver = SocketDriver(sock, poller)
        woke = trio.Event()

        async def reader() -> None:
            await driver.wait(WANT_READ)
            await driver.wait(WANT_READ)
            woke.set()

        nursery.start_soon(reader)
        await trio.testing.wait_all_tasks_blocked()
        driver.leave_poller()
        await trio.testing.wait_all_tasks_blocked()
        assert not woke.is_set() and driver.waiting  # now waiting through trio
        peer.send(b"x")
        with trio.fail_after(5):
            await woke.wait()


async def test_a_first_wait_after_the_poller_stopped_goes_through_trio(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    """A connection the server accepted just before it stopped (its task starts later, in a ``handler_nursery``) has
    never waited, so the stop did not hand it over: its first wait finds the poller stopped and waits through trio
    (audit 58)."""
    sock, peer = pair
    async with running() as (poller, nursery):
        driver = SocketDriver(sock, poller)
        nursery.cancel_scope.cancel()
    peer.send(b"x")
    with trio.fail_after(5):
        await driver.wait(WANT_READ)
    assert sock.recv(1) == b"x"


async def test_a_closing_socket_is_forgotten(pair: tuple[socket.socket, socket.socket]) -> None:
    """The poller keeps no driver (and with it no socket object) of a connection that closed: a busy server would
    otherwise hold one per descriptor number ever used (audit 58)."""
    sock, peer = pair
    async with running() as (poller, _):
        driver = SocketDriver(sock, poller)
        peer.send(b"x")
        with trio.fail_after(5):
            await driver.wait(WANT_READ)  # joins the set
        assert poller._drivers == {sock.fileno(): driver}
        driver.closing()
        assert poller._drivers == {}


async def test_leaving_the_poller_takes_the_socket_out_of_its_set(pair: tuple[socket.socket, socket.socket]) -> None:
    """A socket handed to trio (a handler proxying over ``transport_stream``) leaves the epoll set, not only the
    poller's table: else every edge of that busy socket would still wake the poller's task for nothing (audit 58)."""
    sock, peer = pair
    async with running() as (poller, _):
        driver = SocketDriver(sock, poller)
        peer.send(b"x")
        with trio.fail_after(5):
            await driver.wait(WANT_READ)  # joins the set
        driver.leave_poller()
        epoll = poller._epoll
        assert epoll is not None
        epoll.register(sock.fileno(), select.EPOLLIN)  # FileExistsError while it is still in the set
        epoll.unregister(sock.fileno())


def test_removing_from_a_poller_whose_run_just_stopped_in_another_thread_is_quiet(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    """audit 49: a stream handed to a worker thread's run leaves the server's poller as it first waits there; if the
    server's run stops at that moment, ``remove`` finds the set closed (ValueError, or None read twice): it must stay
    quiet, as for a closed descriptor. The interleaving is set up directly: the set is closed under ``remove``."""
    sock, _ = pair
    poller = Poller()
    assert poller.add(sock.fileno(), SocketDriver(sock, None))
    assert poller._epoll is not None
    poller._epoll.close()  # the run's finally, in the other thread, between remove's check and its unregister
    poller.remove(sock.fileno())  # raised ValueError: I/O operation on closed epoll object


class _StoppingMeanwhile(dict[int, SocketDriver]):
    """The poller's drivers, whose ``pop`` runs the other thread's ``finally`` (set emptied to None, then closed)."""

    def __init__(self, poller: Poller, fd: int, driver: SocketDriver) -> None:
        super().__init__({fd: driver})
        self.poller = poller

    def pop(self, *args: Any) -> Any:
        found = super().pop(*args)
        epoll, self.poller._epoll = self.poller._epoll, None
        assert epoll is not None
        epoll.close()
        return found


def test_removing_while_the_run_stops_reads_the_set_once(pair: tuple[socket.socket, socket.socket]) -> None:
    """The run's ``finally`` sets ``_epoll`` to None and only then hands back the drivers: ``remove`` may read the
    set either way, and must use what it read (a second read found None: AttributeError)."""
    sock, _ = pair
    for stops_first in (False, True):
        poller = Poller()
        driver = SocketDriver(sock, None)
        assert poller.add(sock.fileno(), driver)
        if stops_first:  # None already read, the driver still listed
            assert poller._epoll is not None
            poller._epoll.close()
            poller._epoll = None
        else:
            poller._drivers = _StoppingMeanwhile(poller, sock.fileno(), driver)
        poller.remove(sock.fileno())


# --- end to end --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return write_pki(tmp_path_factory.mktemp("poller"))


async def echo(stream: TLSStream) -> None:
    while data := await stream.receive_some():
        await stream.send_all(data)


def client_context(pki: PKI) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca_file))
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    return context


def idle_clients(port: int, pki: PKI, count: int, ready: trio.Event, release: trio.Event,
                 token: trio.lowlevel.TrioToken) -> list[bytes]:
    """In a thread: ``count`` handshaken connections that say nothing until ``release``, then echo one line each."""
    context = client_context(pki)
    held: list[ssl.SSLSocket] = []
    try:
        for _ in range(count):
            raw = socket.create_connection(("127.0.0.1", port), timeout=10)
            held.append(context.wrap_socket(raw, server_hostname="localhost"))
        trio.from_thread.run_sync(ready.set, trio_token=token)
        trio.from_thread.run(release.wait, trio_token=token)
        replies = []
        for number, conn in enumerate(held):
            conn.sendall(b"line %d" % number)
            replies.append(conn.recv(100))
        return replies
    finally:
        for conn in held:
            conn.close()


@asynccontextmanager
async def server(pki: PKI, handler_nursery: trio.Nursery | None = None, handler: Handler = echo
                 ) -> AsyncIterator[tuple[int, trio.Nursery]]:
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            lambda task_status: serve_tls_over_tcp(handler, 0, pki.server_options(), host="127.0.0.1",
                                                   handler_nursery=handler_nursery, task_status=task_status)
        )
        yield listeners[0].socket.getsockname()[1], nursery
        nursery.cancel_scope.cancel()


async def test_idle_connections_wait_in_the_poller_and_still_answer(pki: PKI) -> None:
    """Idle served connections hold no trio wait each (the memory an idle connection costs); each still answers."""
    count = 40
    ready, release = trio.Event(), trio.Event()
    fds_before = len(os.listdir("/proc/self/fd"))
    async with server(pki) as (port, _):
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                result: list[list[bytes]] = []

                async def clients() -> None:
                    result.append(await trio.to_thread.run_sync(
                        idle_clients, port, pki, count, ready, release, trio.lowlevel.current_trio_token()))

                nursery.start_soon(clients)
                try:
                    await ready.wait()
                    await trio.testing.wait_all_tasks_blocked()
                    waiting = trio.lowlevel.current_statistics().io_statistics.tasks_waiting_read
                finally:
                    release.set()  # the clients' thread ends in any case
                # The accept loop, the poller and the clients' thread wake-up: not one per connection.
                assert waiting < 5, waiting
        assert result == [[b"line %d" % n for n in range(count)]]
    await trio.testing.wait_all_tasks_blocked()
    assert len(os.listdir("/proc/self/fd")) == fds_before  # the poller's epoll descriptor too


async def test_connections_outliving_their_server_keep_working(pki: PKI) -> None:
    """With a ``handler_nursery``, handlers outlive the server; their reads move from its poller to trio."""
    ready, release = trio.Event(), trio.Event()
    async with trio.open_nursery() as handlers:
        async with server(pki, handler_nursery=handlers) as (port, _):
            result: list[list[bytes]] = []

            async def clients() -> None:
                result.append(await trio.to_thread.run_sync(
                    idle_clients, port, pki, 3, ready, release, trio.lowlevel.current_trio_token()))

            handlers.start_soon(clients)
            with trio.fail_after(10):
                await ready.wait()
                await trio.testing.wait_all_tasks_blocked()
        release.set()  # the server (and its poller) stopped: the handlers still answer
        with trio.fail_after(10):
            while not result:
                await trio.sleep(0.01)
        assert result == [[b"line %d" % n for n in range(3)]]
        handlers.cancel_scope.cancel()


async def test_a_handler_that_takes_the_transport_stream_keeps_working(pki: PKI) -> None:
    """``transport_stream`` lets a handler wait on the socket through trio itself: the connection leaves the poller
    (mid-life, after its handshake waited there), and its reads still work, and closing the transport through trio
    from another task wakes a reader."""
    seen: list[bool] = []

    async def handler(stream: TLSStream) -> None:
        transport = stream.transport_stream
        assert isinstance(transport, trio.SocketStream)
        line = await stream.receive_some()
        await stream.send_all(line)
        async with trio.open_nursery() as nursery:

            async def reader() -> None:
                try:
                    await stream.receive_some()  # parks through trio now
                except trio.BrokenResourceError:  # the transport was closed underneath the TLS stream
                    seen.append(True)

            nursery.start_soon(reader)
            await trio.testing.wait_all_tasks_blocked()
            await transport.aclose()  # trio's close wakes trio's waiters only: the reader must be one of them

    def client(port: int) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
                client_context(pki).wrap_socket(raw, server_hostname="localhost") as conn:
            conn.sendall(b"ping")
            reply = conn.recv(100)
            conn.recv(100)  # until the server closes
            return reply

    async with server(pki, handler=handler) as (port, _):
        with trio.fail_after(10):
            assert await trio.to_thread.run_sync(client, port) == b"ping"
            while not seen:
                await trio.sleep(0.01)


async def test_a_stream_handed_to_another_trio_run_keeps_working(pki: PKI) -> None:
    """A handler may hand its stream to a worker thread's own ``trio.run`` (as with trio's ``SSLStream``). The
    poller can only wake tasks of its own run: the stream leaves it, and the server and the exchange go on."""
    worker_results: list[bytes] = []

    async def use_elsewhere(stream: TLSStream) -> bytes:
        with trio.fail_after(10):
            data = await stream.receive_some()  # parks in the worker's run: the client writes later
            await stream.send_all(data.upper())
            return data

    async def handler(stream: TLSStream) -> None:
        worker_results.append(await trio.to_thread.run_sync(trio.run, use_elsewhere, stream))
        await stream.send_all(b"!")  # and back in the server's run

    def client(port: int) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
                client_context(pki).wrap_socket(raw, server_hostname="localhost") as conn:
            reply = b""
            conn.settimeout(0.3)
            try:
                reply += conn.recv(100)  # nothing yet: the worker's receive parks first
            except TimeoutError:
                pass
            conn.settimeout(10)
            conn.sendall(b"hello")
            while len(reply) < 6:
                chunk = conn.recv(100)
                if not chunk:
                    break
                reply += chunk
            return reply

    async with server(pki, handler=handler) as (port, _):
        with trio.fail_after(20):
            replies = [await trio.to_thread.run_sync(client, port) for _ in range(2)]
    assert replies == [b"HELLO!", b"HELLO!"]
    assert worker_results == [b"hello", b"hello"]

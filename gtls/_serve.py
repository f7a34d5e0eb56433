"""The serving loop behind ``serve_tls_over_tcp``: batched accepts, handshakes advanced without a task, one task per
connection once its handshake is over, one reaper for every handshake deadline.

Per connection the work is: ``accept``, wrap, handshake, spawn the connection's task, handler, close — nothing
else. Compared with trio's ``serve_listeners`` + ``SSLStream``:

* accepts are taken in batches straight from the listening socket, with one wait per batch instead of one
  scheduler pass per connection;
* the handshake's first step runs as the connection is accepted, and its next ones in the poller's task as the
  peer's flights arrive (``TLSStream._advance_untasked``): the connection's task starts once the handshake is over
  (or has failed, or needs the socket writable), so a handshake costs no task switch of its own and a peer that
  stalls mid-handshake holds no task. With a cap on handshakes in flight, each handshake waits for its slot in its
  task instead;
* handshake deadlines are enforced by one reaper task per server (all deadlines of a server are equal, so
  accept order is deadline order: a deque, no heap, no cancel scope per connection); on expiry it breaks the
  stream with ``timeout`` and closes its socket, which wakes the handshake;
* connections wait for readability in the server's edge-triggered poller (``gtls._poller``): no trio wait record
  per idle connection and no ``epoll_ctl`` per wait;
* the connection's task closes its stream synchronously at the end (``close_notify`` if the socket takes it at
  once), with no cancel scope and no extra checkpoint.

Like trio's loop it survives EMFILE/ENFILE/ENOMEM/ENOBUFS: it logs, pauses accepting for 0.1 s and goes on.

Handler exceptions (gtls decision): a ``trio.BrokenResourceError`` or ``trio.ClosedResourceError`` raised by *this
connection's own stream* (a peer that reset, truncated, sent garbage) is one peer's problem, not the server's: it
is logged once on ``gtls.server`` with its connection-end word (``gtls.ending``) and the server goes on. Any other
exception, including those errors from another stream the handler uses, still propagates as in trio. The
``try`` costs nothing while no exception is raised.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final, Protocol

import trio

from ._poller import AVAILABLE as POLLER_AVAILABLE
from ._poller import Poller
from ._printable import printable
from ._socket_driver import SocketDriver
from ._tcp import set_tcp_options
from .ending import classify_ending
from .errors import MAX_CAUSE_CHAIN
from .stream import _OK, TLSStream

if TYPE_CHECKING:
    from .context import CompiledContext
    from .server import Handshaker, TLSListener

logger = logging.getLogger("gtls.server")

#: accept() failures meaning "out of resources right now": pause and retry (as trio's serve_listeners does).
CAPACITY_ERRNOS: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
#: accept() failures about one connection that died in the backlog: skip it (as trio's SocketListener does).
SKIPPABLE_ERRNOS: Final = frozenset(
    getattr(errno, name)
    for name in ("EPERM", "ECONNABORTED", "EPROTO", "ENETDOWN", "ENOPROTOOPT", "EHOSTDOWN", "ENONET",
                 "EHOSTUNREACH", "EOPNOTSUPP", "ENETUNREACH")
    if hasattr(errno, name)
)
#: accept() failures meaning the listening socket itself was closed.
CLOSED_ERRNOS: Final = frozenset({errno.EBADF, errno.ENOTSOCK})
CAPACITY_PAUSE: Final = 0.1
#: Connections accepted per wake-up before the loop yields to the handshakes it started.
ACCEPT_BATCH: Final = 64
#: Full batches in a row before the accept loop tries a larger batch (see _accept_loop).
ACCEPT_PROBE: Final = 4

#: Every connection task's name. Given explicitly, trio does not format one per task (a string per connection).
CONNECTION_TASK_NAME: Final = "gtls.serve_tls_over_tcp.connection"
#: Seconds between the serving loop's looks at a session-ticket key's age, at most (see _renew_ticket_keys).
RENEWAL_LOOK: Final = 60.0

Handler = Callable[[TLSStream], Awaitable[object]]
Entry = list[TLSStream | None]


class TaskStarter(Protocol):
    """What trio documents for ``handler_nursery``: "the nursery used to start handlers, or any object with a
    ``start_soon`` method" (one that counts or limits connections, say); it is called without keywords."""

    def start_soon(self, async_fn: Callable[..., Awaitable[object]], /, *args: Any) -> object: ...


class HandshakeDeadlines:
    """Enforces the handshake deadline of every connection of one server from a single task.

    The task runs in the server's nursery. Handshakes running in a ``handler_nursery`` may outlive the server: then
    ``run`` is started again there, keeps their deadlines and ends once the last of them is over."""

    __slots__ = ("timeout", "_queue", "_serving", "_scope")

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._queue: deque[tuple[float, Entry]] = deque()
        self._serving = True
        self._scope: trio.CancelScope | None = None

    def add(self, stream: TLSStream) -> Entry:
        """Track ``stream`` until ``done(entry)``."""
        entry: Entry = [stream]
        self._queue.append((trio.current_time() + self.timeout, entry))
        return entry

    def done(self, entry: Entry) -> None:
        """The handshake is over. Handshakes finish roughly in accept order, so dropping finished entries from the
        front keeps the queue as short as the handshakes in flight (an idle connection costs nothing here)."""
        entry[0] = None
        if not self._drop_finished() and not self._serving:
            self._finish()

    def server_stopped(self) -> bool:
        """No more connections will come: ``run`` ends as soon as no handshake is left in flight. True while some
        are."""
        self._serving = False
        in_flight = self._drop_finished()
        if not in_flight:
            self._finish()
        return in_flight

    def _drop_finished(self) -> bool:
        """Drop the finished entries at the front; True while any entry is left."""
        queue = self._queue
        while queue and queue[0][1][0] is None:
            queue.popleft()
        return bool(queue)

    def _finish(self) -> None:
        if self._scope is not None:
            self._scope.cancel()

    async def run(self) -> None:
        queue = self._queue
        with trio.CancelScope() as self._scope:
            while self._serving or queue:
                if queue:
                    await trio.sleep_until(queue[0][0])
                else:
                    await trio.sleep(self.timeout)  # anything added meanwhile is due no earlier than this wake-up
                now = trio.current_time()
                while queue and queue[0][0] <= now:
                    stream = queue.popleft()[1][0]
                    if stream is not None:
                        stream._abort_handshake(stream._timeout_error(self.timeout))
                    # Not kept while sleeping until the next deadline: the stream (and its OpenSSL connection) is
                    # freed as soon as its task lets go of it, on an idle server too.
                    stream = None


async def serve_listeners(
    handler: Handler,
    listeners: list[TLSListener],
    handshaker: Handshaker,
    *,
    handler_nursery: trio.Nursery | TaskStarter | None,
    task_status: trio.TaskStatus[list[TLSListener]],
) -> None:
    # The cap on handshakes in flight needs a per-connection wait for a slot, so that mode keeps a cancel scope per
    # handshake (Handshaker.run); otherwise one reaper serves every deadline.
    deadlines = None
    if handshaker.timeout is not None and handshaker.limiter is None:
        deadlines = HandshakeDeadlines(handshaker.timeout)
    try:
        await _serve(handler, listeners, handshaker, deadlines, handler_nursery=handler_nursery,
                     task_status=task_status)
    finally:
        # As trio's serve_listeners: the port closes when serving ends. Left to the garbage collector, the socket
        # would go on listening, and the kernel on completing connections that nobody will ever accept.
        for listener in listeners:
            listener.socket.close()
        if deadlines is not None and deadlines.server_stopped() and handler_nursery is not None:
            # Handshakes the server started run on among the handlers: their deadlines must hold there too.
            handler_nursery.start_soon(deadlines.run)


async def _serve(
    handler: Handler,
    listeners: list[TLSListener],
    handshaker: Handshaker,
    deadlines: HandshakeDeadlines | None,
    *,
    handler_nursery: trio.Nursery | TaskStarter | None,
    task_status: trio.TaskStatus[list[TLSListener]],
) -> None:
    async with trio.open_nursery() as nursery:
        tasks = handler_nursery if handler_nursery is not None else nursery
        if deadlines is not None:
            nursery.start_soon(deadlines.run)

        async def connection(stream: TLSStream, entry: Entry | None, started: float) -> None:
            completed = False  # the handler returned: only then does the connection end with close_notify
            ok = False
            try:
                ok = await handshaker.run(stream, started)
                if entry is not None and deadlines is not None:
                    deadlines.done(entry)
                    entry = None
                if ok:
                    try:
                        await handler(stream)
                        completed = True
                    except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                        if not raised_by(stream, exc):
                            raise
                        log_ending(stream, exc)
                    except BaseExceptionGroup as group:
                        # A handler with its own nursery: only when every error in the group is this
                        # connection's stream failing does the server go on; otherwise the group propagates.
                        if not _only_stream_failures(stream, group):
                            raise
                        log_ending(stream, group.exceptions[0])
            finally:
                if entry is not None and deadlines is not None:
                    deadlines.done(entry)
                if stream.socket_bound:
                    if not ok and stream._rejected_in_handshake():
                        try:  # failure path only: let the refused peer read our alert first
                            await stream._linger()
                        finally:
                            stream._close_now(False)
                    else:
                        stream._close_now(completed)
                else:  # pragma: no cover - listeners always produce socket-bound streams
                    await trio.aclose_forcefully(stream)

        # Only a nursery takes the task's name (given, trio formats none per connection); trio's serving loop passes
        # any other starter positional arguments only, so must this one.
        def spawn(stream: TLSStream, entry: Entry | None, started: float) -> None:
            if isinstance(tasks, trio.Nursery):
                tasks.start_soon(connection, stream, entry, started, name=CONNECTION_TASK_NAME)
            else:
                tasks.start_soon(connection, stream, entry, started)

        untasked = handshaker.limiter is None  # a cap on handshakes in flight waits for a slot in the task
        hook = handshaker.on_handshake

        def start(stream: TLSStream) -> None:
            entry = deadlines.add(stream) if deadlines is not None else None
            started = trio.current_time() if hook is not None else 0.0  # durations only go into events
            # The handshake goes as far as it can without a task of its own: its first step now, the next ones from
            # the poller as the peer's flights come in. The task starts once it is over, has failed or needs the
            # socket writable; a peer that stalls meanwhile costs no task (gtls._socket_driver).
            driver = stream._driver
            if (
                untasked
                and driver.__class__ is SocketDriver
                and stream._advance_untasked()
                and driver.watch_untasked(lambda: resume(stream, driver, entry, started))
            ):
                return
            spawn(stream, entry, started)

        def resume(stream: TLSStream, driver: SocketDriver, entry: Entry | None, started: float) -> None:
            """The poller saw the socket readable, or let go of it: the socket is closing (the deadline's reaper) or
            the server stopped. The task takes over from there."""
            if driver._poller is not None and stream._state == _OK and stream._advance_untasked():
                return
            driver.end_untasked()
            spawn(stream, entry, started)

        # The loop closes every stream it starts, so their read waits can go through a poller of its own.
        poller = None
        if POLLER_AVAILABLE and any(listener.raw_socket is not None for listener in listeners):
            poller = Poller()
            nursery.start_soon(poller.run)
        for listener in listeners:
            nursery.start_soon(_accept_loop, listener, start, poller)
        sharing: dict[int, list[CompiledContext]] = {}  # the listeners' contexts, by the slot they share
        for listener in listeners:
            if listener.context._slot.renews:
                sharing.setdefault(id(listener.context._slot), []).append(listener.context)
        for contexts in sharing.values():
            nursery.start_soon(_renew_ticket_keys, contexts)
        task_status.started(listeners)


async def _renew_ticket_keys(contexts: list[CompiledContext]) -> None:
    """Renew the ports' session-ticket key when it is due, not only at the next connection after that: the key of
    a port that goes quiet must age out too (gtls._sessions). ``contexts`` share one SSL context.

    The new context is built in a worker thread: the build takes ~1 ms, but ~0.1 s with a large CA bundle or CRL,
    which in the event loop would hold up every handshake and transfer of the process. Connections made meanwhile
    take the current key (``ContextSlot`` does not wait for a renewal under way)."""
    first, *others = contexts
    sharing = [context.resolved for context in others]
    slot = first._slot
    while True:
        # At least a second (never a busy loop, whatever the clock), and at most RENEWAL_LOOK: trio's clock stops
        # while the host is suspended, the key's clock does not (gtls._sessions.clock).
        await trio.sleep(min(max(slot.due_in(), 1.0), RENEWAL_LOOK))
        if slot.due():
            try:
                news = await trio.to_thread.run_sync(slot.renew_if_due)
            except RuntimeError:  # no worker thread to be had (can't start new thread): here, as before
                news = slot.renew_if_due()
            first.log_renewal(news, sharing)


async def _accept_loop(listener: TLSListener, start: Callable[[TLSStream], None], poller: Poller | None) -> None:
    """Accept forever; the port closes as soon as accepting ends (as trio's serve_listeners), not once the
    connections still running have ended too."""
    try:
        await _accept_forever(listener, start, poller)
    finally:
        listener.socket.close()


async def _accept_forever(listener: TLSListener, start: Callable[[TLSStream], None], poller: Poller | None) -> None:
    """Streams get no deadline of their own: the reaper or ``Handshaker.run`` enforces it."""
    raw = listener.raw_socket
    if raw is None:  # a listener over a socket we cannot reach directly: trio's accept, one at a time
        while True:
            try:
                stream = await listener._accept_unmanaged()
            except OSError as exc:
                if exc.errno not in CAPACITY_ERRNOS:
                    raise
                await _pause(exc)
                continue
            start(stream)
            del stream  # as below: the connection's task owns it
    listening = listener.socket
    inherited = set_tcp_options(raw)
    accept = _plain_accept(raw)
    # How many accepts to try per wake-up, adapted to the load: under light load a wake-up means one connection,
    # and probing for a second one costs an accept failing with EAGAIN (a syscall and an exception) every time.
    # A full batch goes straight back to the wait, which returns at once while the backlog is non-empty;
    # ACCEPT_PROBE full batches in a row double the limit, and a short batch shrinks it to what was there.
    limit = 1
    full_batches = 0
    while True:
        accepted = 0
        for _ in range(limit):
            try:
                conn, address = accept()
            except BlockingIOError:
                limit = accepted if accepted > 1 else 1
                full_batches = 0
                break
            except OSError as exc:
                if exc.errno in CLOSED_ERRNOS:  # someone closed the listener under us, as trio reports it
                    raise trio.ClosedResourceError("the listening socket was closed") from None
                if exc.errno in SKIPPABLE_ERRNOS:
                    continue
                if exc.errno in CAPACITY_ERRNOS:
                    await _pause(exc)
                    break
                raise
            try:
                conn.setblocking(False)
                if inherited is None:  # first connection: did it inherit the listener's options?
                    inherited = bool(conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                if not inherited:
                    set_tcp_options(conn)
                stream = listener._wrap(conn, address, None, poller)
            except BaseException:
                conn.close()
                raise
            start(stream)
            # The connection's task owns the stream now: this frame must not keep the last one (and its OpenSSL
            # connection) alive until the next connection comes, which on an idle server is never.
            del stream, conn
            accepted += 1
        else:
            full_batches += 1
            if limit < ACCEPT_BATCH:
                if full_batches >= ACCEPT_PROBE:
                    limit *= 2
            else:  # a full batch under sustained load: let the started handshakes run, then go on accepting
                await trio.lowlevel.checkpoint_if_cancelled()
                await trio.lowlevel.cancel_shielded_checkpoint()
                continue
        await trio.lowlevel.wait_readable(listening)


def _plain_accept(listening: socket.socket) -> Callable[[], tuple[socket.socket, object]]:
    """``listening.accept`` without its per-call overhead: ``socket.accept`` converts the listener's family and
    type to enums and checks the default timeout for every connection; here they are read once. The C-level
    ``_accept`` (what ``socket.accept`` calls; accept4 with SOCK_CLOEXEC) is a long-standing CPython detail, so
    its absence falls back to ``accept``."""
    raw_accept = getattr(listening, "_accept", None)
    if raw_accept is None:  # pragma: no cover - CPython has it
        return listening.accept
    family, kind, proto = int(listening.family), int(listening.type), listening.proto
    new_socket = socket.socket

    def accept() -> tuple[socket.socket, object]:
        fd, address = raw_accept()
        return new_socket(family, kind, proto, fd), address

    return accept


async def _pause(exc: OSError) -> None:
    log_peer(
        logger.error,
        "accept returned %s (%s); retrying in %s seconds",
        errno.errorcode.get(exc.errno or 0, exc.errno),
        os.strerror(exc.errno or 0),
        CAPACITY_PAUSE,
    )
    await trio.sleep(CAPACITY_PAUSE)


def raised_by(stream: TLSStream, exc: BaseException) -> bool:
    """True when ``exc`` (or an exception it was raised from) came out of ``stream``'s own methods, so a handler's
    other streams (a backend connection, a pipe) never pass for this peer's failure. Failure path only."""
    current: BaseException | None = exc
    for _ in range(MAX_CAUSE_CHAIN):
        if current is None:
            return False
        if current.__class__ is trio.BrokenResourceError and current.__cause__ is not None and (
            current.__cause__ is stream._cause
        ):
            return True  # the stream's own broken error carries its recorded cause
        traceback = current.__traceback__
        while traceback is not None:
            if traceback.tb_frame.f_locals.get("self") is stream:
                return True
            traceback = traceback.tb_next
        # Only explicit causes: an error the handler raised while handling this stream's failure (its __context__)
        # belongs to the handler, not to this peer.
        current = current.__cause__
    return False


def _only_stream_failures(stream: TLSStream, group: BaseExceptionGroup[BaseException]) -> bool:
    _, rest = group.split(
        lambda exc: isinstance(exc, trio.BrokenResourceError | trio.ClosedResourceError) and raised_by(stream, exc)
    )
    return rest is None


def log_peer(log: Callable[..., None], message: str, *args: object) -> None:
    """Log a line about one connection. A log handler that raises (a bug in the application's logging: the standard
    handlers report their own failures) loses that line instead of taking the port down, since any peer can make
    the server log; as with a raising ``on_handshake`` (gtls decision). Text arguments have their control characters
    escaped (``gtls._printable``): what a peer sent must not forge a line of its own or an escape sequence."""
    try:
        log(message, *(printable(arg) if isinstance(arg, str) else arg for arg in args))
    except Exception:  # noqa: S110 - nothing better to do with a line the logging system refused
        pass


def log_ending(stream: TLSStream, exc: BaseException) -> None:
    """The one log line for a connection whose handler was ended by its own stream's failure."""
    ending = classify_ending(exc)
    log_peer(logger.warning, "connection ended: %s peer=%s: %s", ending.word, stream.peer_address or "unknown",
             ending.detail)


def stdlib_socket_of(sock: trio.socket.SocketType) -> socket.socket | None:
    """The stdlib socket inside a trio socket (a long-standing trio attribute, not public API); None if gone."""
    raw = getattr(sock, "_sock", None)
    return raw if isinstance(raw, socket.socket) else None

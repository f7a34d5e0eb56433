"""Read waits of the serving loop's connections through one edge-triggered epoll set per server (Linux).

An idle server connection spends its life waiting for its socket to become readable. Through
``trio.lowlevel.wait_readable`` each of those waits costs a chain of five coroutine frames, an abort closure and
trio's per-fd waiter record (about 1 KB per connection while it waits), plus an ``epoll_ctl`` to re-arm trio's
one-shot registration before every wait. Here a socket joins the set once, edge-triggered, on its first wait; a
wait is then a flag check and a park on ``trio.lowlevel.wait_task_rescheduled`` (public trio API), and no syscall.

One task in the server's nursery waits on the set's own descriptor (through trio, so cancellation, deadlines and
the rest of the loop behave as usual), reads the ready sockets and reschedules their waiting tasks. An edge that
arrives while no task waits is remembered (``Readiness.SEEN``): the next wait only checkpoints, and its caller
retries OpenSSL, which either makes progress or reports ``WANT_READ`` again and parks. A spurious wake-up therefore
costs one retry; a lost one cannot happen, because a socket is added to the set before its first park and the
kernel reports at once a socket that is already readable when added.

The set never sees a closed socket: a stream forgets its socket here before closing it, and the kernel drops a
closed descriptor from the set by itself (one file description per socket: gtls does not duplicate it). When the
server stops, connections still open (in a ``handler_nursery`` that outlives it) go back to trio's waits, and so
does a connection a handler hands to another ``trio.run`` (a worker thread's): the poller can only wake tasks of its
own run. Write waits, which only a full socket buffer causes, always go through trio.
"""

from __future__ import annotations

import enum
import select
import threading
from typing import TYPE_CHECKING, Final

import trio

if TYPE_CHECKING:
    from ._socket_driver import SocketDriver

#: The most events taken per pass (a larger backlog stays in the kernel's ready list for the next pass).
MAX_EVENTS: Final = 256
AVAILABLE: Final = hasattr(select, "epoll")
#: Readable, or the peer shut down its side, edge-triggered. Errors and hang-ups are always reported.
_INTEREST: Final = select.EPOLLIN | select.EPOLLRDHUP | select.EPOLLET if AVAILABLE else 0


class Readiness(enum.IntEnum):
    """Where one socket stands with the poller."""

    UNREGISTERED = 0
    WAITING_FOR_EDGE = 1
    SEEN = 2


class Poller:
    """One server's epoll set for socket read waits; ``run`` dispatches its events until cancelled."""

    __slots__ = ("_epoll", "_drivers", "thread")

    def __init__(self) -> None:
        self._epoll: select.epoll | None = select.epoll()
        self._drivers: dict[int, SocketDriver] = {}
        #: The thread of the run the poller serves: only that run's tasks can be woken from here. (One thread runs
        #: one trio.run at a time, and a run's end stops its poller, so the thread tells the run.)
        self.thread = threading.get_ident()

    def add(self, fd: int, driver: SocketDriver) -> bool:
        """Watch ``fd`` for ``driver``; False once the poller has stopped. Raises OSError for a closed ``fd``."""
        epoll = self._epoll
        if epoll is None:
            return False
        epoll.register(fd, _INTEREST)
        self._drivers[fd] = driver
        return True

    def forget(self, fd: int) -> None:
        """``fd`` is about to be closed: no more events for it. The kernel removes it from the set on close."""
        self._drivers.pop(fd, None)

    def remove(self, fd: int) -> None:
        """Stop watching ``fd``, which stays open (its socket is handed to trio's own waits)."""
        epoll = self._epoll  # read once: the poller's run, in another thread, may stop and close it meanwhile
        if self._drivers.pop(fd, None) is not None and epoll is not None:
            try:
                epoll.unregister(fd)
            except (OSError, ValueError):  # fd already closed; the set closed since it was read (ValueError)
                pass

    async def run(self) -> None:
        epoll = self._epoll
        assert epoll is not None, "a poller runs once"
        drivers = self._drivers
        try:
            while True:
                await trio.lowlevel.wait_readable(epoll)
                for fd, _flags in epoll.poll(0, MAX_EVENTS):
                    driver = drivers.get(fd)
                    if driver is not None:  # None: forgotten between the kernel's report and now
                        driver.on_readable()
        finally:
            self._epoll = None
            left, self._drivers = list(drivers.values()), {}
            for driver in left:
                driver.poller_stopped()
            epoll.close()

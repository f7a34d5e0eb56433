"""Idle limits for established connections, enforced by one task per server instead of a cancel scope each.

A cancel scope per connection costs about 1 KiB of memory and a few microseconds to set up, for a limit that almost
never fires. Here a connection costs one dict entry holding the time data last moved; one reaper task sweeps the
entries every ``slack`` seconds and ends the connections that stayed idle too long by breaking their stream with a
``trio.TooSlowError`` (``gtls.classify_ending`` word: ``idle-timeout``) and closing the socket, which wakes the task
blocked on it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import trio

if TYPE_CHECKING:
    from .stream import TLSStream

#: The sweep runs every this share of the timeout (at most once a second): a connection ends between ``timeout`` and
#: ``timeout + slack`` after data last moved.
SLACK_SHARE: Final = 0.1


class IdleReaper:
    """Ends the connections on which no data moved for ``timeout`` seconds.

    The connection's task records progress with ``last[stream] = trio.current_time()`` (a clock read and a dict
    store) and removes its entry when it ends; ``run()`` is the reaper task."""

    __slots__ = ("timeout", "slack", "last")

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.slack = min(1.0, timeout * SLACK_SHARE)
        #: When data last moved on each tracked stream (trio's clock).
        self.last: dict[TLSStream, float] = {}

    async def run(self) -> None:
        while True:
            await trio.sleep(self.slack)
            self._sweep()

    def _sweep(self) -> None:
        """End the stale connections. A function of its own: the reaper's frame, which sleeps between sweeps, must
        not keep the last stream it ended (and its OpenSSL state) alive until the next one goes stale."""
        last = self.last
        limit = trio.current_time() - self.timeout
        for stream in [stream for stream, moved in last.items() if moved < limit]:
            del last[stream]
            stream._abort(trio.TooSlowError(f"no data moved in either direction for {self.timeout:g} s"))

"""A library-listener server for the load tests, run as a subprocess (so its descriptor limit and /proc gauges are
its own): ``python tests/listener_server.py CERT KEY CA [--handshake-timeout S]``
(``tests.loadtools.listener_server`` starts it, with a lowered RLIMIT_NOFILE if asked).

It serves ``gtls.serve_tls_over_tcp`` on 127.0.0.1 with an echo-until-EOF handler in a handler nursery of its own,
prints ``listening on 127.0.0.1:PORT``, logs the ``gtls`` loggers to stderr (so the accept loop's EMFILE pause is
visible), and answers each ``stats`` line on stdin with ``stats tasks=T handlers=H fds=F`` (trio tasks in the whole
run, connection tasks alive, open descriptors). EOF on stdin stops it.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

import trio

from gtls import TLSOptions, TLSStream, serve_tls_over_tcp


def task_count() -> int:
    """Every task of this trio run, found by walking the task tree from the root task."""
    pending = [trio.lowlevel.current_root_task()]
    count = 0
    while pending and count < 1_000_000:  # bounded walk
        task = pending.pop()
        count += 1
        for nursery in task.child_nurseries:
            pending.extend(nursery.child_tasks)
    return count


async def echo(stream: TLSStream) -> None:
    try:
        while data := await stream.receive_some():
            await stream.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass


async def main(args: argparse.Namespace) -> None:
    options = TLSOptions.from_mapping({"certificate": args.cert, "certificate-key": args.key, "trusted-ca": args.ca})
    stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    async with trio.open_nursery() as nursery, trio.open_nursery() as handlers:
        listeners = await nursery.start(
            lambda task_status: serve_tls_over_tcp(
                echo, 0, options, host="127.0.0.1", handshake_timeout=args.handshake_timeout,
                handler_nursery=handlers, task_status=task_status,
            )
        )
        print(f"listening on 127.0.0.1:{listeners[0].socket.getsockname()[1]}", flush=True)
        buffer = b""
        while chunk := await stdin.receive_some():
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                if line.strip() == b"stats":
                    fds = len(os.listdir("/proc/self/fd"))
                    print(f"stats tasks={task_count()} handlers={len(handlers.child_tasks)} fds={fds}", flush=True)
        nursery.cancel_scope.cancel()
        handlers.cancel_scope.cancel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("cert")
    parser.add_argument("key")
    parser.add_argument("ca")
    parser.add_argument("--handshake-timeout", type=float, default=10.0)
    arguments = parser.parse_args()
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(name)s: %(message)s")
    trio.run(main, arguments)

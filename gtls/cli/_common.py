"""Exit codes, the one-line error format and small output helpers shared by the subcommands."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, NoReturn, TextIO, TypeAlias, TypeVar

from .._printable import printable
from .._redact import redact
from ..options import host_problem

if TYPE_CHECKING:
    from cryptography import x509

    from ..errors import ConfigError

EXIT_OK = 0
#: A connection, handshake or check failure.
EXIT_FAILURE = 1
#: A usage or configuration error.
EXIT_USAGE = 2

#: Reason word of a TCP connection that could not be established (refused, unreachable, timed out, bad name).
#: Not in spec §10, which names handshake failures only; the CLI adds it (gtls).
CONNECT_FAILED = "connect-failed"
#: Reason word of a listening port that could not be opened (address in use, not permitted).
LISTEN_FAILED = "listen-failed"
#: Reason word of a command whose standard output closed before it printed what it had to (``gtls serve | true``,
#: ``gtls connect … | head -1``).
STDOUT_CLOSED = "stdout-closed"

T = TypeVar("T")


class UsageError(Exception):
    """Bad or contradictory command-line arguments (exit 2)."""


class StdoutUnwritable(Exception):
    """Standard output cannot take the command's output: closed (``>&-``), its reader gone (``| head -1``), or its
    file full (``>/dev/full``). The command ends with one ``stdout-closed`` line (exit 1), not a traceback."""


class GuardedStdout:
    """What the command line prints through (``sys.stdout`` while a command runs): write errors of the real stream
    become ``StdoutUnwritable``, which ``main`` reports, wherever in a command the print happened."""

    def __init__(self, real: TextIO | None) -> None:
        self.real = real

    def write(self, text: str) -> int:
        return self._call(lambda out: _write_escaped(out, text))

    def flush(self) -> None:
        if self.real is not None:  # a closed stdout holds nothing to flush: only a write to it fails
            self._call(lambda out: out.flush())

    def fileno(self) -> int:
        return self._call(lambda out: out.fileno())

    def isatty(self) -> bool:
        return self.real is not None and self.real.isatty()

    def _call(self, action: Callable[[TextIO], T]) -> T:
        if self.real is None:
            raise StdoutUnwritable("standard output is closed")
        try:
            return action(self.real)
        except UnicodeError:
            raise
        except (OSError, ValueError) as exc:  # ValueError: the stream object itself was closed
            raise StdoutUnwritable(getattr(exc, "strerror", None) or str(exc)) from None


def _write_escaped(out: TextIO, text: str) -> int:
    """``out.write(text)``; characters the output's encoding lacks (a subject in Greek on an ASCII locale) are
    written as escapes rather than failing the command."""
    try:
        return out.write(text)
    except UnicodeEncodeError:
        encoding = getattr(out, "encoding", None) or "ascii"
        return out.write(text.encode(encoding, "backslashreplace").decode(encoding))


class CliParser(argparse.ArgumentParser):
    """argparse with errors in the ``gtls: usage error: …`` one-line form and exit code 2."""

    #: The subcommands' parsers, by name (the top parser's only): an unknown flag is reported by the subcommand it
    #: was given to, so the user is sent to ``gtls connect --help``, not ``gtls --help``.
    subcommands: Mapping[str, argparse.ArgumentParser] = {}

    def error(self, message: str) -> NoReturn:
        stderr_line(f"gtls: usage error: {message} (see '{self.prog} --help')")
        raise SystemExit(EXIT_USAGE)


#: The object ``add_subparsers()`` returns.
Subcommands: TypeAlias = "argparse._SubParsersAction[CliParser]"


def stderr_line(text: str) -> None:
    """Every line the command writes to stderr: with key material left out, whatever value it quotes. A stderr that
    cannot take it (closed, full, its reader gone) loses the line: the exit code still tells, and a warning must not
    stop a command (``print`` to a closed stderr, ``None``, would even write to stdout)."""
    err = sys.stderr
    if err is None:
        return
    with contextlib.suppress(OSError, ValueError):
        print(redact(text), file=err, flush=True)


def report_failure(reason: str, detail: str) -> int:
    """Print the single ``gtls: REASON: detail`` line and return exit code 1."""
    stderr_line(f"gtls: {reason}: {_one_line(detail)}")
    return EXIT_FAILURE


def report_stdout_closed(detail: str) -> int:
    """Standard output could not take what the command had to print: say so in the one failure line (exit 1), and
    send whatever is still buffered for stdout to /dev/null, so the interpreter's last flush adds no traceback."""
    real = sys.__stdout__
    if real is not None:
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(devnull, real.fileno())
            finally:
                os.close(devnull)
    return report_failure(STDOUT_CLOSED, detail)


def describe_config_error(exc: ConfigError) -> str:
    """One line naming what is wrong, where (object path, level, option) and the file involved."""
    text = str(exc)
    if exc.level and exc.object_path is None:
        # Settings given directly have no object path; say which level the flags formed.
        text = f"level {exc.level}: {text}" if f"level {exc.level}" not in text else text
    if exc.file and exc.file not in text:
        text = f"{text} (file {exc.file})"
    return _one_line(text)


def report_config_error(exc: ConfigError) -> int:
    """``gtls: config error: KeyMismatch: …``: the error's class is its stable word (spec §10), for scripts to tell
    apart without reading the message; ``gtls check`` names it so too."""
    stderr_line(f"gtls: config error: {type(exc).__name__}: {describe_config_error(exc)}")
    return EXIT_USAGE


class _LineFormatter(logging.Formatter):
    """``gtls: warning: …`` or ``gtls: error: …`` by the record's level, key material left out."""

    def format(self, record: logging.LogRecord) -> str:
        kind = "error" if record.levelno >= logging.ERROR else "warning"
        return redact(f"gtls: {kind}: {super().format(record)}")


def route_library_logging() -> None:
    """Warnings and errors gtls modules log (``gtls.*`` loggers) go to stderr as ``gtls: warning: …`` and
    ``gtls: error: …`` lines, like the command's own, instead of Python's bare last-resort output."""
    package = logging.getLogger("gtls")
    if not package.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_LineFormatter("%(message)s"))
        package.addHandler(handler)
        package.setLevel(logging.WARNING)
        package.propagate = False


@contextlib.contextmanager
def warnings_before_config_errors(warnings: list[str]) -> Iterator[None]:
    """Print the warnings gathered so far when a configuration error ends the command: they are often its cause
    (a miscased option name, a transport piece without '=')."""
    from ..errors import ConfigError

    try:
        yield
    except ConfigError as exc:
        report_warnings([*warnings, *exc.warnings])
        raise


def report_warnings(warnings: Iterable[str]) -> None:
    seen: set[str] = set()
    for warning in warnings:
        if warning not in seen:
            seen.add(warning)
            stderr_line(f"gtls: warning: {_one_line(warning)}")


def _one_line(text: str) -> str:
    """One line of text: whitespace runs become one space, other control characters escapes (a peer's certificate
    names reach failure lines; an escape sequence there would act on the terminal)."""
    return printable(" ".join(text.split()))


def parse_host_port(text: str, *, what: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[IPv6]:PORT`` -> (host, port); raises UsageError."""
    host, sep, port_text = text.rpartition(":")
    # ASCII digits only: str.isdigit() takes '²' (then int() fails) and '٣' (which int() reads as 3).
    if not sep or not host or not (port_text.isascii() and port_text.isdigit()):
        raise UsageError(f"{what} must be HOST:PORT, got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise UsageError(f"{what}: write an IPv6 address in brackets, e.g. [::1]:{port_text}")
    problem = host_problem(host)
    if problem is not None:
        raise UsageError(f"{what}: {problem}")
    port = int(port_text)
    if port > 65535:
        raise UsageError(f"{what}: port {port} is out of range")
    return host, port


def format_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def name_of(name: x509.Name) -> str:
    """RFC 4514 form, as openssl and most tools print it (control characters escaped: a server's own bytes)."""
    from ..pki.certs import rfc4514_text

    return rfc4514_text(name, "(empty)")


def certificate_lines(cert: x509.Certificate, index: int) -> list[str]:
    """Subject, issuer and validity of one certificate, for chain listings."""
    return [
        f"  {index} subject: {name_of(cert.subject)}",
        f"    issuer:  {name_of(cert.issuer)}",
        f"    valid:   {cert.not_valid_before_utc:%Y-%m-%d %H:%M:%SZ} to {cert.not_valid_after_utc:%Y-%m-%d %H:%M:%SZ}",
    ]

"""The ``gtls`` command (design §6): ``serve``, ``connect``, ``check``, ``chain``, ``pki`` and ``bench``.

Exit codes: 0 success; 1 a connection, handshake or check failure (one stderr line ``gtls: REASON: detail``);
2 a usage or configuration error (``gtls: config error: ErrorClass: detail`` / ``gtls: usage error: detail``).
Heavy modules (trio, pyOpenSSL, the PKI code) are imported by the subcommand that needs them, so ``--help``
and the error paths stay quick.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from . import _bench, _chain, _check, _connect, _pki, _serve
from ._common import (
    EXIT_USAGE,
    CliParser,
    GuardedStdout,
    StdoutUnwritable,
    UsageError,
    report_config_error,
    report_stdout_closed,
    route_library_logging,
    stderr_line,
)

Command = Callable[..., int]


class _VersionAction(argparse.Action):
    """``--version``: gtls's version and the libraries a bug report needs, imported only when asked for."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print the versions of gtls, pyOpenSSL, OpenSSL and trio")

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> NoReturn:
        import OpenSSL
        import trio
        from OpenSSL import SSL

        from .._version import __version__

        openssl = SSL.SSLeay_version(SSL.SSLEAY_VERSION).decode("ascii", "replace")
        print(f"gtls {__version__} (pyOpenSSL {OpenSSL.__version__}, {openssl}, trio {trio.__version__})")
        parser.exit()


def build_parser() -> CliParser:
    parser = CliParser(prog="gtls", description="TLS endpoints configured like the Genesys Security Pack.")
    parser.add_argument("--version", action=_VersionAction)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=CliParser)
    for module in (_serve, _connect, _check, _chain, _pki, _bench):
        module.register(commands)
    parser.subcommands = commands.choices
    return parser


def main(argv: list[str] | None = None) -> int:
    real = sys.stdout
    sys.stdout = GuardedStdout(real)
    try:
        code = _main(argv)
        sys.stdout.flush()  # what is still buffered fails here, not in the interpreter's last flush
        return code
    except StdoutUnwritable as exc:
        return report_stdout_closed(f"standard output could not take the command's output ({exc}); stopping")
    finally:
        sys.stdout = real


def _main(argv: list[str] | None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if arguments and arguments[0] == "bench":
        # bench parses its own arguments (another module's CLI); pass them through untouched.
        return _bench.run_bench(arguments[1:])
    args, extra = parser.parse_known_args(arguments)
    if extra:  # what parse_args does, but from the subcommand's parser: its error names its own --help
        command = getattr(args, "command", None) or ""
        subcommand = parser.subcommands.get(command, parser)
        if command in arguments and arguments.index(extra[0]) < arguments.index(command):
            subcommand = parser  # given before the subcommand's name: a top-level flag (`gtls --bogus connect`)
        hint = ""
        if getattr(args, "command", None) == "connect" and any(a.split("=")[0] == "--tls-mutual" for a in extra):
            hint = "; --tls-mutual is a server setting (gtls serve)"
        subcommand.error(f"unrecognized arguments: {' '.join(extra)}{hint}")
    run: Command | None = getattr(args, "run", None)
    if run is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    route_library_logging()
    with warnings.catch_warnings():  # the filter holds for this command only (main may run in-process)
        # gtls names such certificates in its own warning lines (trusted-ca: … has serial number 0 …).
        warnings.filterwarnings("ignore", message="Parsed a serial number which wasn't positive")
        return _run_command(run, args)


def _run_command(run: Command, args: argparse.Namespace) -> int:
    from ..errors import ConfigError

    try:
        return run(args)
    except UsageError as exc:  # pointed to the subcommand's help, as argparse's own usage errors are
        stderr_line(f"gtls: usage error: {exc} (see 'gtls {args.command} --help')")
        return EXIT_USAGE
    except ConfigError as exc:
        return report_config_error(exc)
    except KeyboardInterrupt:
        return 130

"""``gtls pki DIR``: write a demo or test PKI (root, intermediate, server and client certificates, CRL)."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from ._common import EXIT_FAILURE, EXIT_OK, Subcommands, UsageError, stderr_line


def register(commands: Subcommands) -> None:
    parser = commands.add_parser(
        "pki",
        help="write a demo/test PKI (CA, intermediate, server and client certificates, CRL) to DIR",
        description="Write a demo/test PKI to DIR with gtls.testing.demo_pki. These keys are for tests and "
        "demos only: never trust this CA anywhere else.",
    )
    parser.add_argument("directory", metavar="DIR", help="folder to write (created if missing)")
    parser.add_argument("--server-name", action="append", dest="server_names", metavar="NAME",
                        help="DNS name of the server certificate (repeatable; default localhost)")
    parser.add_argument("--client-name", default=None, metavar="NAME",
                        help="common name of the client certificate (default: gtls.testing's)")
    parser.add_argument("--key-type", choices=("ec", "rsa"), default="ec", help="EC P-256 (default) or RSA-2048")
    parser.add_argument("--days", type=int, default=365, metavar="N",
                        help="validity of the leaves and CRLs in days (CAs: twice as long; default 365)")
    parser.add_argument("--force", action="store_true", help="overwrite PEM files already in DIR")
    parser.set_defaults(run=run)


#: The longest validity --days takes (CAs get twice as long; X.509 dates end in 9999).
MAX_DAYS = 36500


def run(args: argparse.Namespace) -> int:
    from ..testing import demo_pki

    directory = Path(args.directory)
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"{directory} exists and is not a folder")
    if not args.force and directory.is_dir() and any(directory.glob("*.pem")):
        # Refuse to overwrite someone's keys by accident.
        raise UsageError(f"{directory} already holds PEM files; use --force to overwrite them")
    if not 1 <= args.days <= MAX_DAYS:
        raise UsageError(f"--days must be from 1 to {MAX_DAYS}")
    if any(not name.strip() for name in args.server_names or ()):
        raise UsageError("--server-name must not be empty")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        demo = demo_pki(
            directory,
            key_type=args.key_type,
            server_names=tuple(args.server_names or ("localhost",)),
            client_name=args.client_name or "gtls demo client",
            days=args.days,
        )
    except OSError as exc:
        stderr_line(f"gtls: pki: cannot write {directory}: {exc.strerror or exc}")
        return EXIT_FAILURE
    except ValueError as exc:  # a name no certificate can carry (over 64 characters for the CN, not ASCII, …)
        raise UsageError(f"cannot make certificates for {', '.join(args.server_names or ())}: {exc}") from None
    written = sorted(demo.files.values(), key=lambda path: path.name)
    print(f"wrote {len(written)} files to {directory}:")
    for path in written:
        print(f"  {path.name}")
    print("try it:")
    q = shlex.quote  # paths may hold spaces: the printed commands must run as printed
    print(f"  gtls serve --listen 127.0.0.1:9443 --certificate {q(str(demo.server_chain.resolve()))} "
          f"--certificate-key {q(str(demo.server_key.resolve()))} --trusted-ca {q(str(demo.root_ca.resolve()))}")
    print(f"  gtls connect localhost:9443 --trusted-ca {q(str(demo.root_ca.resolve()))} --tls-target-name-check host")
    return EXIT_OK

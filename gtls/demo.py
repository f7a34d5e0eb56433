"""The per-user demo PKI behind a bare ``gtls serve``.

The folder is ``$GTLS_DATA_DIR/demo`` when ``GTLS_DATA_DIR`` is set (tests use this), else
``$XDG_DATA_HOME/gtls/demo``, else ``~/.local/share/gtls/demo``. It is made on first use with
``gtls.testing.demo_pki`` and remade when a file is missing or damaged, a key is readable by others, or the server
certificate is about to expire.
These are demo keys: anyone who can read the folder can impersonate the demo server, so never trust its CA
anywhere else.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import ConfigError
from .testing import DemoFiles as DemoFiles  # the files of the set, named here for gtls serve
from .testing import demo_pki

#: Remake the demo PKI when its server certificate expires within this window.
RENEW_WITHIN = dt.timedelta(days=2)
DEMO_SERVER_NAMES = ("localhost",)
DEMO_CLIENT_NAME = "gtls demo client"


def data_dir() -> Path:
    """The per-user gtls data folder (``GTLS_DATA_DIR`` overrides the XDG location), always absolute."""
    override = os.environ.get("GTLS_DATA_DIR")
    if override:
        return Path(override).expanduser().absolute()
    xdg = os.environ.get("XDG_DATA_HOME")
    # The XDG base-directory spec says relative values are invalid and must be ignored.
    base = Path(xdg) if xdg and os.path.isabs(xdg) else _home() / ".local" / "share"
    return base / "gtls"


def _home() -> Path:
    """The user's home folder. An empty ``HOME`` counts as unset (``Path.home()`` would make it ``/``, and root's
    demo PKI would land in ``/.local``): the account database decides then."""
    if os.environ.get("HOME"):
        return Path.home()
    try:
        import pwd

        return Path(pwd.getpwuid(os.getuid()).pw_dir)
    except (ImportError, KeyError):  # no account database (or no entry for this uid): what Python would do
        return Path.home()


def demo_dir() -> Path:
    return data_dir() / "demo"


class DemoUnavailable(ConfigError):
    """The demo PKI can be neither used nor made (an unwritable data folder)."""


def ensure_demo_pki(directory: Path | None = None, *, now: dt.datetime | None = None) -> tuple[DemoFiles, bool]:
    """Return the demo PKI in ``directory`` (default :func:`demo_dir`), creating it when needed.

    Returns the files and whether they were created now. Creation writes into a temporary sibling folder and
    renames it into place, under a lock in the parent folder: two first runs at once make one set, and the second
    uses it. Raises ``DemoUnavailable`` naming the folder when it cannot be written.
    """
    target = directory if directory is not None else demo_dir()
    files = DemoFiles(target)
    when = now or dt.datetime.now(dt.UTC)
    if _usable(files, when):
        return files, False
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with _creation_lock(target.parent):
            if _usable(files, when):  # made by another process while we waited
                return files, False
            _create(target)
    except OSError as exc:
        if isinstance(exc, (FileExistsError, NotADirectoryError)) and exc.filename:
            detail = f"{_first_non_folder(Path(exc.filename))} is not a folder"
        else:
            detail = f"{exc.strerror}: {exc.filename}" if exc.strerror and exc.filename else str(exc)
        raise DemoUnavailable(
            f"cannot create the demo PKI in {target} ({detail}); set GTLS_DATA_DIR to a writable folder or give "
            "credentials (--certificate, --certificate-key, --trusted-ca)"
        ) from None
    return files, True


def _first_non_folder(path: Path) -> Path:
    """The part of ``path`` in the way: the nearest existing ancestor (or itself) that is not a folder."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate if not candidate.is_dir() else path
    return path


@contextlib.contextmanager
def _creation_lock(folder: Path) -> Iterator[None]:
    """An exclusive lock on ``folder/.demo.lock`` (where ``fcntl`` exists: elsewhere the renames alone decide)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    with open(folder / ".demo.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        yield


def _create(target: Path) -> None:
    fresh = Path(tempfile.mkdtemp(prefix=".demo-new-", dir=target.parent))
    try:

        demo_pki(fresh, server_names=DEMO_SERVER_NAMES, client_name=DEMO_CLIENT_NAME)
        if target.exists():
            # Stale or damaged: move it aside first (rename is atomic), then drop it.
            stale = Path(tempfile.mkdtemp(prefix=".demo-old-", dir=target.parent))
            try:
                os.rename(target, stale / "demo")
            finally:
                shutil.rmtree(stale, ignore_errors=True)
        os.rename(fresh, target)
    finally:
        if fresh.exists():
            shutil.rmtree(fresh, ignore_errors=True)


def _usable(files: DemoFiles, now: dt.datetime) -> bool:
    """Every file there and sound: certificates that parse, keys that load, are readable by their owner only (a key
    others could read is not a secret any more: the set is made anew) and match their certificates, and a server
    certificate valid for a while yet."""
    if not all(path.is_file() for path in files.files.values()):  # the README's examples use every one of them
        return False
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        leaves = []
        for cert_file, key_file in ((files.server_cert, files.server_key), (files.client_cert, files.client_key)):
            if key_file.stat().st_mode & 0o077:
                return False
            leaves.append(x509.load_pem_x509_certificate(cert_file.read_bytes()))
            key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
            if key.public_key() != leaves[-1].public_key():
                return False
        for chain_file in (files.root_ca, files.intermediate_ca, files.server_chain, files.client_chain,
                           files.ca_bundle, files.second_root_ca):
            if not x509.load_pem_x509_certificates(chain_file.read_bytes()):
                return False
        x509.load_pem_x509_crl(files.crl.read_bytes())
    except (OSError, ValueError, TypeError):
        return False
    server = leaves[0]
    return server.not_valid_before_utc <= now and server.not_valid_after_utc > now + RENEW_WITHIN

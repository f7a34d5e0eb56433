"""The per-user demo PKI behind a bare ``gtls serve``.

The folder is ``$GTLS_DATA_DIR/demo`` when ``GTLS_DATA_DIR`` is set (tests use this), else
``$XDG_DATA_HOME/gtls/demo``, else ``~/.local/share/gtls/demo``. It is made on first use with
``gtls.testing.demo_pki`` and remade when its server certificate is missing, unreadable or about to expire.
These are demo keys: anyone who can read the folder can impersonate the demo server, so never trust its CA
anywhere else.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

#: Remake the demo PKI when its server certificate expires within this window.
RENEW_WITHIN = dt.timedelta(days=2)
DEMO_SERVER_NAMES = ("localhost",)
DEMO_CLIENT_NAME = "gtls demo client"


@dataclass(frozen=True, slots=True)
class DemoFiles:
    """The files of the demo PKI (``gtls.testing.demo_pki`` writes them; a bare ``gtls serve`` and the hints it
    prints use them)."""

    directory: Path

    @property
    def root_ca(self) -> Path:
        return self.directory / "root-ca.pem"

    @property
    def server_cert(self) -> Path:
        return self.directory / "server-cert.pem"

    @property
    def server_chain(self) -> Path:
        return self.directory / "server-chain.pem"

    @property
    def server_key(self) -> Path:
        return self.directory / "server-key.pem"

    @property
    def intermediate_ca(self) -> Path:
        return self.directory / "intermediate-ca.pem"

    @property
    def client_cert(self) -> Path:
        return self.directory / "client-cert.pem"

    @property
    def client_chain(self) -> Path:
        return self.directory / "client-chain.pem"

    @property
    def client_key(self) -> Path:
        return self.directory / "client-key.pem"

    @property
    def crl(self) -> Path:
        return self.directory / "crl.pem"

    @property
    def ca_bundle(self) -> Path:
        return self.directory / "ca-bundle.pem"

    @property
    def second_root_ca(self) -> Path:
        return self.directory / "second-root-ca.pem"

    def required(self) -> tuple[Path, ...]:
        """The files a bare ``gtls serve`` and its hints need."""
        return (self.root_ca, self.intermediate_ca, self.server_cert, self.server_chain, self.server_key,
                self.client_cert, self.client_chain, self.client_key)

    @property
    def files(self) -> dict[str, Path]:
        """File name → path for every file of the set."""
        return {p.name: p for p in (*self.required(), self.ca_bundle, self.second_root_ca, self.crl)}


def data_dir() -> Path:
    """The per-user gtls data folder (``GTLS_DATA_DIR`` overrides the XDG location)."""
    override = os.environ.get("GTLS_DATA_DIR")
    if override:
        return Path(override).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    # The XDG base-directory spec says relative values are invalid and must be ignored.
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".local" / "share"
    return base / "gtls"


def demo_dir() -> Path:
    return data_dir() / "demo"


def ensure_demo_pki(directory: Path | None = None, *, now: dt.datetime | None = None) -> tuple[DemoFiles, bool]:
    """Return the demo PKI in ``directory`` (default :func:`demo_dir`), creating it when needed.

    Returns the files and whether they were created now. Creation writes into a temporary sibling folder and
    renames it into place, so a concurrent first run never sees half-written files: the first rename wins and
    the loser uses the winner's files.
    """
    target = directory if directory is not None else demo_dir()
    files = DemoFiles(target)
    if _usable(files, now or dt.datetime.now(dt.UTC)):
        return files, False
    target.parent.mkdir(parents=True, exist_ok=True)
    fresh = Path(tempfile.mkdtemp(prefix=".demo-new-", dir=target.parent))
    try:
        from .testing import demo_pki  # lazy: only a first run needs the PKI builder

        demo_pki(fresh, server_names=DEMO_SERVER_NAMES, client_name=DEMO_CLIENT_NAME)
        if target.exists():
            # Stale or broken: move it aside first (rename is atomic), then drop it.
            stale = Path(tempfile.mkdtemp(prefix=".demo-old-", dir=target.parent))
            os.rename(target, stale / "demo")
            shutil.rmtree(stale, ignore_errors=True)
        try:
            os.rename(fresh, target)
        except OSError:
            if not _usable(files, dt.datetime.now(dt.UTC)):
                raise
            return files, False  # another process created it at the same moment
    finally:
        if fresh.exists():
            shutil.rmtree(fresh, ignore_errors=True)
    return files, True


def _usable(files: DemoFiles, now: dt.datetime) -> bool:
    if not all(path.is_file() for path in files.required()):
        return False
    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificate(files.server_cert.read_bytes())
    except (OSError, ValueError):
        return False
    return cert.not_valid_before_utc <= now and cert.not_valid_after_utc > now + RENEW_WITHIN

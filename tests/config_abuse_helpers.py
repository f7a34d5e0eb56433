"""Helpers for the configuration-abuse and secrets tests: the `gtls` command run in-process with captured output, a
good PKI on disk, broken variants of each file option, and a way to make a file unreadable even for root."""

from __future__ import annotations

import io
import logging
import os
import shutil
import socket
import subprocess
from collections.abc import Sequence
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

from gtls.cli import main
from gtls.pki.pem import MAX_FILE_BYTES
from gtls.testing import CA, Certified, write_pem

#: The file options and the error class each raises for a bad file (spec §10).
FILE_OPTIONS = ("certificate", "certificate-key", "trusted-ca", "tls-crl", "certificate-store")
#: Every way a file can be wrong that is checked for every file option (directory: not for the store, where a
#: directory is a valid value).
FILE_ABUSES = ("missing", "directory", "empty", "binary", "bad-base64", "cut-mid-body", "cut-before-end",
               "wrong-kind", "junk-50mb", "over-limit", "fifo")
#: A stand-in for a file larger than gtls reads: sparse, so it costs no disk; reading it would take minutes.
SPARSE_SIZE = 4 * 1024 * 1024 * 1024
assert SPARSE_SIZE > MAX_FILE_BYTES


@dataclass(frozen=True)
class CliRun:
    code: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]


def run_cli(*args: str) -> CliRun:
    """``gtls ARGS`` in this process (quick enough for hypothesis), output captured. An exception escaping
    ``main`` fails the test: that would be a traceback for the user. The ``gtls`` logger is restored afterwards
    (``main`` routes it to the captured stderr)."""
    logger = logging.getLogger("gtls")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    out, err = io.StringIO(), io.StringIO()
    try:
        with redirect_stdout(out), redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as exc:  # argparse's usage errors
                code = exc.code if isinstance(exc.code, int) else 2
    finally:
        logger.handlers[:] = saved[0]
        logger.setLevel(saved[1])
        logger.propagate = saved[2]
    return CliRun(code, out.getvalue(), err.getvalue())


@dataclass(frozen=True)
class GoodFiles:
    """A working mutual-TLS server configuration: every option names a valid file."""

    dir: Path
    root: CA
    inter: CA
    leaf: Certified
    chain: Path
    key: Path
    ca: Path
    crl: Path
    store: Path  # one identity file: key, leaf, intermediate

    def server_options(self) -> dict[str, str]:
        return {"certificate": str(self.chain), "certificate-key": str(self.key), "trusted-ca": str(self.ca),
                "tls-crl": str(self.crl), "tls-mutual": "1"}

    def with_file(self, option: str, path: Path | str) -> dict[str, str]:
        """The server options with ``option`` naming ``path`` (for the store: a thumbprint looked up there)."""
        options = self.server_options()
        if option == "certificate-store":
            del options["certificate-key"]
            options["certificate"] = self.leaf.thumbprint
        options[option] = str(path)
        return options


def good_files(directory: Path) -> GoodFiles:
    directory.mkdir(parents=True, exist_ok=True)
    root = CA.root("abuse root")
    inter = root.intermediate("abuse inter")
    leaf = inter.leaf("localhost", dns=["localhost"], ips=["127.0.0.1"])
    return GoodFiles(
        dir=directory, root=root, inter=inter, leaf=leaf,
        chain=leaf.write_chain(directory / "chain.pem"),
        key=leaf.write_key(directory / "key.pem"),
        ca=root.write_cert(directory / "ca.pem"),
        crl=write_pem(directory / "crl.pem", root.crl(), inter.crl()),
        store=write_pem(directory / "identity.pem", leaf.key_pem, leaf, inter, mode=0o600),
    )


def good_pem(good: GoodFiles, option: str) -> bytes:
    """The valid content of ``option``'s file, the basis of truncations."""
    return {"certificate": good.leaf.cert_pem, "certificate-key": good.leaf.key_pem, "trusted-ca": good.root.cert_pem,
            "tls-crl": good.root.crl().pem, "certificate-store": good.leaf.key_pem + good.leaf.cert_pem}[option]


def wrong_kind(good: GoodFiles, option: str) -> bytes:
    """A valid PEM file of another kind: a key for a certificate, a certificate for a key or CRL, a CRL for CAs."""
    return {"certificate": good.leaf.key_pem, "certificate-key": good.leaf.cert_pem, "trusted-ca": good.root.crl().pem,
            "tls-crl": good.root.cert_pem, "certificate-store": good.leaf.cert_pem}[option]


def write_abuse(good: GoodFiles, option: str, abuse: str, directory: Path, junk_50mb: Path) -> Path:
    """A file (or non-file) at a new path under ``directory`` that is wrong for ``option`` in the way ``abuse``."""
    path = directory / f"{option}-{abuse}.pem"
    pem = good_pem(good, option)
    end = pem.index(b"-----END")
    contents = {
        "empty": b"",
        "binary": bytes(range(256)) * 8,
        "bad-base64": b"-----BEGIN CERTIFICATE-----\nMIIB%%%%not*base64!!\n-----END CERTIFICATE-----\n",
        "cut-mid-body": pem[: end // 2],
        "cut-before-end": pem[:end],
        "wrong-kind": wrong_kind(good, option),
    }
    if option == "certificate-key":  # the key file's own kind, damaged the same ways
        contents["bad-base64"] = b"-----BEGIN PRIVATE KEY-----\n%%%%\n-----END PRIVATE KEY-----\n"
    if option == "tls-crl":
        contents["bad-base64"] = b"-----BEGIN X509 CRL-----\n%%%%\n-----END X509 CRL-----\n"
    if abuse == "missing":
        return path
    if abuse == "directory":
        path.mkdir()
        return path
    if abuse == "junk-50mb":
        return junk_50mb
    if abuse == "over-limit":
        with path.open("wb") as handle:
            handle.truncate(SPARSE_SIZE)
        return path
    if abuse == "fifo":
        os.mkfifo(path)
        return path
    path.write_bytes(contents[abuse])
    path.chmod(0o600)
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def port_is_closed(port: int) -> bool:
    """Nothing accepts TCP on 127.0.0.1:port (plaintext or otherwise)."""
    with socket.socket() as probe:
        probe.settimeout(2.0)
        return probe.connect_ex(("127.0.0.1", port)) != 0


def unreadable_wrapper() -> list[str] | None:
    """A command prefix under which a mode-000 file cannot be read, or ``None`` when there is none. Tests run as
    root, which reads any file; ``setpriv`` drops the capabilities that let it (the uid stays 0, so the Python
    installation stays usable)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return None
    prefix = [setpriv, "--bounding-set", "-dac_override,-dac_read_search"]
    probe = Path(os.environ.get("TMPDIR", "/tmp")) / f"gtls-unreadable-probe-{os.getpid()}"
    try:
        probe.write_bytes(b"x")
        probe.chmod(0)
        result = subprocess.run([*prefix, "cat", str(probe)], capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    finally:
        probe.unlink(missing_ok=True)
    return prefix if result.returncode != 0 else None


def deployment_toml(entries: Sequence[tuple[str, dict[str, str]]]) -> str:
    """A deployment with one server application per entry (``name``, Host-level options), each on its own host."""
    lines: list[str] = []
    for name, options in entries:
        lines.append(f"[hosts.{name}-host.security]")
        lines.extend(f"{key} = {toml_string(value)}" for key, value in options.items())
        lines += [f"[applications.{name}]", f'host = "{name}-host"', 'certificate-source = "Host"',
                  f"[applications.{name}.ports.default]", 'address = "127.0.0.1"', "port = 0",
                  'transport = "tls=1"', ""]
    return "\n".join(lines)


def toml_string(value: str) -> str:
    """A TOML basic string for any text (escapes every control character)."""
    out = []
    for ch in value:
        if ch in '"\\' or ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'

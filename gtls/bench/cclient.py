"""The C bulk load client (``bulk_client.c``), built once per benchmark run where a C compiler and OpenSSL's headers
are installed.

Why: the Python load client spends more CPU per KiB than the gtls server, so with one load core it would set the
bulk MB/s itself. The C client does the same work (same writes, same 1 MiB window, same HTTP bodies for nginx) for
every server alike, so the MB/s is the server's. Without a compiler the Python client is used and a note says so.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

SOURCE = Path(__file__).with_name("bulk_client.c")


def build_bulk_client(workdir: Path) -> tuple[Path | None, str]:
    """(path of the built client, "") or (None, why it could not be built)."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        return None, "no C compiler (cc)"
    if not SOURCE.is_file():
        return None, f"{SOURCE.name} is not installed with gtls"
    target = workdir / "bulk_client"
    try:
        built = subprocess.run([compiler, "-O2", "-o", str(target), str(SOURCE), "-lssl", "-lcrypto"],
                               capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"cannot build it ({exc})"
    if built.returncode != 0:
        last = (built.stderr.strip().splitlines() or ["no output"])[-1]
        return None, f"cannot build it (OpenSSL headers missing? {last[:200]})"
    return target, ""

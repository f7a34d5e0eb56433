"""Level resolution (spec §3): level-atomic, the only mode.

CONTRACT (shared by every module; owner of the algorithm: the foundation work):

``Resolved`` is what every later layer consumes. ``options`` holds the *effective* values: the parameter set
taken from the effective level only, defaults filled in (``sec_protocol`` stays ``None`` for "empty/default",
``tls_crl_scope`` = ``"leaf"``, ``tls_crl_expired`` = ``"reject"``, ``tls_target_name_check`` = ``"no"``,
booleans ``False``), ``tls_crl`` holding the effective CRL path (alias folded), ``crl`` ``None``.
``sources`` gives, per Genesys option name, the level letter it came from: ``"P"``, ``"C"``, ``"T"``, ``"A"``,
``"H"`` or ``"default"``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Literal

from .options import TLSOptions

Role = Literal["server", "client"]
Profile = Literal["unix", "windows"]


class Level(Enum):
    PORT = "P"
    CONNECTION = "C"
    TARGET = "T"
    APPLICATION = "A"
    HOST = "H"

    @property
    def title(self) -> str:
        return {"P": "Port", "C": "Connection", "T": "Target port", "A": "Application", "H": "Host"}[self.value]


@dataclass(frozen=True, slots=True)
class Shadowed:
    """A parameter-set option present at a level that resolution did not use."""

    level: Level
    option: str
    value: str


@dataclass(frozen=True, slots=True)
class Resolved:
    role: Role
    secure: bool
    options: TLSOptions
    level: Level | None
    sources: dict[str, str] = field(default_factory=dict)
    shadowed: tuple[Shadowed, ...] = ()
    warnings: tuple[str, ...] = ()
    profile: Profile = "unix"
    object_path: str | None = None
    #: Relative paths in the options are resolved against this folder (the deployment file's folder, or the
    #: working directory for settings given directly).
    base_dir: Path = field(default_factory=Path.cwd)

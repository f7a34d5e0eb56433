"""``Level`` and ``Shadowed``, public as ``gtls.resolve.Level`` and ``gtls.resolve.Shadowed``.

They live apart from ``gtls.resolve`` because ``gtls.errors`` names ``Shadowed`` in ``ConfigError.shadowed``, and
``gtls.resolve`` imports ``gtls.errors``: imported for type checkers only, the name was missing at run time, and
``typing.get_type_hints`` on every ``ConfigError`` class raised ``NameError`` (pydantic, typeguard, cattrs and
sphinx read annotations that way). Standard library only, as ``gtls.errors`` is.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Level(Enum):
    """The configuration object a setting came from (spec §3): its value is the letter ``Resolved.sources`` and
    ``gtls check`` show (``P``, ``C``, ``T``, ``A``, ``H``; ``default`` there means no level set it)."""

    PORT = "P"
    CONNECTION = "C"
    TARGET = "T"
    APPLICATION = "A"
    HOST = "H"

    @property
    def title(self) -> str:
        """The level's name as error messages write it (``"Port"``, ``"Target port"``, …)."""
        return {"P": "Port", "C": "Connection", "T": "Target port", "A": "Application", "H": "Host"}[self.value]


@dataclass(frozen=True, slots=True)
class Shadowed:
    """A parameter-set option present at a level that resolution did not use."""

    level: Level
    option: str
    value: str


# Named where users import them from (reprs, pickles, documentation), as before the move.
Level.__module__ = Shadowed.__module__ = "gtls.resolve"

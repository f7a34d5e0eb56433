"""``Level``, ``LevelTitle`` and ``Shadowed``, public as ``gtls.resolve.Level``, ``gtls.errors.LevelTitle`` and
``gtls.resolve.Shadowed``.

They live apart from ``gtls.resolve`` because ``gtls.errors`` names ``Shadowed`` in ``ConfigError.shadowed``, and
``gtls.resolve`` imports ``gtls.errors``: imported for type checkers only, the name was missing at run time, and
``typing.get_type_hints`` on every ``ConfigError`` class raised ``NameError`` (pydantic, typeguard, cattrs and
sphinx read annotations that way). Standard library only, as ``gtls.errors`` is.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Final, Literal

#: A level's name as error messages write it: ``Level.title`` and ``ConfigError.level``.
LevelTitle = Literal["Port", "Connection", "Target port", "Application", "Host"]
_TITLES: Final[dict[str, LevelTitle]] = {
    "P": "Port", "C": "Connection", "T": "Target port", "A": "Application", "H": "Host",
}


class Level(Enum):
    """The configuration object a setting came from (spec §3): its value is the letter ``Resolved.sources`` and
    ``gtls check`` show (``P``, ``C``, ``T``, ``A``, ``H``; ``default`` there means no level set it)."""

    PORT = "P"
    CONNECTION = "C"
    TARGET = "T"
    APPLICATION = "A"
    HOST = "H"

    @property
    def title(self) -> LevelTitle:
        """The level's name as error messages write it (``"Port"``, ``"Target port"``, …)."""
        return _TITLES[self.value]


@dataclass(frozen=True, slots=True)
class Shadowed:
    """A parameter-set option present at a level that resolution did not use."""

    level: Level
    option: str
    value: str


# Named where users import them from (reprs, pickles, documentation), as before the move.
Level.__module__ = Shadowed.__module__ = "gtls.resolve"

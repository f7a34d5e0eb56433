"""Where a configuration error happened: the deployment object and level, attached to every error we raise."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, LevelTitle


@dataclass(frozen=True, slots=True)
class Where:
    """The object path and level of the settings being compiled; ``None`` when given directly."""

    object_path: str | None = None
    level: LevelTitle | None = None

    def error(
        self, cls: type[ConfigError], message: str, *, option: str, file: Path | str | None = None
    ) -> ConfigError:
        """An error of class ``cls`` naming the option, the file (in the message too) and where it happened."""
        file_text = str(file) if file is not None else None
        if file_text is not None and file_text not in message:
            message = f"{message}: {file_text}"
        return cls(message, object_path=self.object_path, level=self.level, option=option, file=file_text)

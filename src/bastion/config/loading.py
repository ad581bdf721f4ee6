"""Where settings come from: a TOML file, the ``BASTION_*`` environment and explicit overrides;
and the environment variables that name the file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic_settings import SettingsConfigDict

from bastion.config.settings import Settings


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build settings from an optional TOML file, the environment, and explicit overrides."""
    if config_file is not None:
        if not config_file.is_file():
            raise FileNotFoundError(f"configuration file {config_file} does not exist")

        class _FromFile(Settings):
            model_config = SettingsConfigDict(toml_file=config_file)

        return _FromFile(**overrides)
    return Settings(**overrides)


CONFIG_FILE_VARIABLE = "BASTION_CONFIG_FILE"


def settings_from_environment() -> Settings:
    """Settings for a worker process: the file named by BASTION_CONFIG_FILE, if any, plus the
    environment. Used by ``bastion serve --workers N``, whose workers start from an import string.
    """
    import os

    path = os.environ.get(CONFIG_FILE_VARIABLE)
    return load_settings(Path(path) if path else None)


CONFIG_VARIABLE = "BASTION_CONFIG"


def config_file_from_environment() -> Path | None:
    """The configuration file ``$BASTION_CONFIG`` names, if it names one."""
    import os

    named = os.environ.get(CONFIG_VARIABLE)
    return Path(named) if named else None


def environment_names_data() -> bool:
    """Whether ``BASTION_DATABASE_URL`` or ``BASTION_DATA_DIR`` say where the data is, so that
    no configuration file is needed (containers)."""
    import os

    return any(os.environ.get(v) for v in ("BASTION_DATABASE_URL", "BASTION_DATA_DIR"))


def export_config_file(config_file: Path) -> None:
    """Name the configuration file for worker processes started later by uvicorn."""
    import os

    os.environ[CONFIG_FILE_VARIABLE] = str(config_file.resolve())


def export_log_settings(settings: Settings) -> None:
    """Hand ``settings.logging`` as it is now (command-line options included) to worker
    processes started later by uvicorn, through the environment they read settings from."""
    import os

    # What the command line may change; the key reaches the workers as the rest of the settings.
    for name, value in settings.logging.model_dump(exclude={"hash_key"}).items():
        os.environ[f"BASTION_LOGGING__{name.upper()}"] = str(value).lower()


METRICS_DIRECTORY_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


def export_metrics_directory(directory: Path) -> None:
    """Name the directory where worker processes started later write their metrics
    (prometheus_client's multiprocess mode, read when they import it)."""
    import os

    os.environ[METRICS_DIRECTORY_VARIABLE] = str(directory)


__all__ = [
    "CONFIG_FILE_VARIABLE",
    "CONFIG_VARIABLE",
    "METRICS_DIRECTORY_VARIABLE",
    "config_file_from_environment",
    "environment_names_data",
    "export_config_file",
    "export_log_settings",
    "export_metrics_directory",
    "load_settings",
    "settings_from_environment",
]

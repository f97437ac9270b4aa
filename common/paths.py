"""Where the app keeps its data: platformdirs' user data dir, or $ASSISTANT_HOME."""

import os
from pathlib import Path

import platformdirs

APP_NAME = "hearthchat"


def data_dir() -> Path:
    """The root of everything the app writes. Created on first use."""
    override = os.environ.get("ASSISTANT_HOME")
    root = Path(override) if override else Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))
    root.mkdir(parents=True, exist_ok=True)
    return root


def models_dir() -> Path:
    path = data_dir() / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


def history_db_path() -> Path:
    return data_dir() / "history.db"

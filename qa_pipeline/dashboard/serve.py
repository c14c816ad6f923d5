"""Serving the dashboard locally: `qa-pipeline dashboard --port N` and `make dashboard`."""

from __future__ import annotations

import sys
from pathlib import Path

APP = Path(__file__).with_name("app.py")
DEFAULT_PORT = 8501


def url(port: int = DEFAULT_PORT, host: str = "127.0.0.1") -> str:
    return f"http://{host}:{port}"


def command(port: int = DEFAULT_PORT, host: str = "127.0.0.1") -> list[str]:
    """Streamlit on loopback, offline: no usage statistics, no file watcher, no browser opened,
    no "deploy" or developer menus (`client.toolbarMode=viewer`)."""
    return [
        sys.executable, "-m", "streamlit", "run", str(APP),
        "--server.port", str(port), "--server.address", host, "--server.headless", "true",
        "--server.fileWatcherType", "none", "--server.runOnSave", "false",
        "--browser.gatherUsageStats", "false", "--browser.serverAddress", host,
        "--client.toolbarMode", "viewer", "--global.developmentMode", "false",
        "--theme.base", "light",
    ]

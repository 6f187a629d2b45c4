"""The embedded PostgreSQL (pgserver) as a handle the dev stack and `campaigns migrate` own.

`db.engine.start_embedded_postgres` leaves the server running for whoever attaches next; the
development commands instead stop it again when they exit, so nothing outlives them.
"""

import json
import os
import warnings
from pathlib import Path
from typing import Any

HANDLES_FILE = ".handle_pids.json"  # pgserver's list of the processes that hold the server


def embedded_pg_dir(state_dir: Path) -> Path:
    """Where the embedded cluster lives: `CAMPAIGNS_EMBEDDED_PG_DIR` (as `db.engine` reads it) or state/pg."""
    override = os.environ.get("CAMPAIGNS_EMBEDDED_PG_DIR")
    return Path(override).resolve() if override else (state_dir / "pg").resolve()


class EmbeddedPostgres:
    """Start (or attach to) pgserver in `data_dir`; `stop()` shuts it down if we are its last user."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._server: Any = None

    def start(self) -> str:
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); its fallback is fine.
            warnings.simplefilter("ignore")
            import pgserver  # local import: only development and tests use it

        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        forget_dead_holders(self.data_dir)
        self._server = pgserver.get_server(str(self.data_dir), cleanup_mode="stop")  # type: ignore[attr-defined]
        uri: str = self._server.get_uri()
        return uri

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def forget_dead_holders(data_dir: Path) -> None:
    """pgserver stops the server only when the last holder leaves; a holder killed with -9 never
    leaves. Drop holders that no longer exist so that our exit really stops the server."""
    path = data_dir / HANDLES_FILE
    try:
        pids = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return
    if not isinstance(pids, list):
        return
    alive = [pid for pid in pids if isinstance(pid, int) and _alive(pid)]
    if alive != pids:
        path.write_text(json.dumps(alive))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

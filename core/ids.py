"""Ids of the form `<kind>_<random>` (contract §2)."""

import secrets


def new_id(kind: str) -> str:
    return f"{kind}_{secrets.token_hex(8)}"

"""Ids of the form `<kind>_<random>` (README "API at a glance")."""

import secrets


def new_id(kind: str) -> str:
    return f"{kind}_{secrets.token_hex(8)}"

"""Values sealed at rest: provider credentials, DKIM private keys, webhook signing secrets.

Sealed with Fernet (AES-128-CBC + HMAC-SHA256, from `cryptography`) under a key derived from
`CAMPAIGNS_SECRET_KEY`. A token names no tenant and no purpose: callers store it in their own row
and never return it through the API.

Rotation (README "Tenants, senders and providers"): set the new `CAMPAIGNS_SECRET_KEY`, move the old
one to `CAMPAIGNS_SECRET_KEYS_PREVIOUS`; tokens sealed under either key open, new ones use the new
key, and `reseal` rewrites an old token under the new key. Drop the old key once every stored value
has been resealed.
"""

import base64
import hashlib
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from core.settings import get_settings


class SealedValueError(ValueError):
    """A token that no configured key opens (a wrong or dropped key, or a damaged value)."""


def _fernet_key(secret: str) -> bytes:
    # Fernet wants 32 url-safe base64 bytes; any secret string becomes one through SHA-256.
    return base64.urlsafe_b64encode(hashlib.sha256(secret.encode()).digest())


@lru_cache(maxsize=8)
def _box(current: str, previous: str) -> MultiFernet:
    keys = [current, *(k.strip() for k in previous.split(",") if k.strip())]
    return MultiFernet([Fernet(_fernet_key(k)) for k in keys])


def _settings_box() -> MultiFernet:
    settings = get_settings()
    return _box(settings.secret_key, settings.secret_keys_previous)


def seal(plaintext: str) -> str:
    """The value sealed under the current key (a different token each call)."""
    return _settings_box().encrypt(plaintext.encode()).decode()


def unseal(token: str) -> str:
    """The plaintext of a token sealed under the current or a previous key."""
    try:
        return _settings_box().decrypt(token.encode()).decode()
    except InvalidToken as err:
        raise SealedValueError("no configured key opens this sealed value") from err


def reseal(token: str) -> str:
    """The same plaintext sealed under the current key (for rotation)."""
    try:
        return _settings_box().rotate(token.encode()).decode()
    except InvalidToken as err:
        raise SealedValueError("no configured key opens this sealed value") from err

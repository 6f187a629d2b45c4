"""The cache of verified bearer tokens (api.auth.decode) never outlives what it caches: a cached
token stops working at its `exp`, and a token is valid only for the settings that verified it."""

import time
from datetime import timedelta
from typing import Any

import pytest

from api import auth
from api.auth import decode, issue_token
from api.errors import Problem
from core.settings import Settings


def _settings(**values: Any) -> Settings:
    return Settings(environment="test", **values)


def test_a_cached_token_expires_at_its_exp() -> None:
    settings = _settings()
    token = issue_token(settings, "user_cache", ["tenant_cache"], ttl=timedelta(seconds=2))
    assert decode(token, settings).subject == "user_cache"
    assert any(key[0] == token for key in auth._verified)  # the second call is a cache hit
    assert decode(token, settings).tenants == frozenset({"tenant_cache"})
    time.sleep(2.2)
    with pytest.raises(Problem) as refused:
        decode(token, settings)
    assert refused.value.status == 401
    assert not any(key[0] == token for key in auth._verified)


def test_a_token_cached_under_one_key_is_refused_under_another() -> None:
    first = _settings(jwt_secret="a" * 40)
    token = issue_token(first, "user_cache", ["tenant_cache"])
    assert decode(token, first).subject == "user_cache"
    with pytest.raises(Problem) as refused:
        decode(token, _settings(jwt_secret="b" * 40))
    assert refused.value.status == 401
    with pytest.raises(Problem):
        decode(token, _settings(jwt_secret="a" * 40, jwt_audience="someone-else"))


def test_an_invalid_token_is_never_cached() -> None:
    settings = _settings()
    before = len(auth._verified)
    for _ in range(3):
        with pytest.raises(Problem):
            decode("not.a.token", settings)
    assert len(auth._verified) == before

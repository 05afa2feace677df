"""Token renewal: when to renew, and the token source's behaviour with a fake clock."""

from __future__ import annotations

import httpx
import pytest

from tolken.connectors.poweroffice import needs_renewal, renew_at
from tolken.connectors.poweroffice._auth import Token, TokenSource, parse_token_response
from tolken.errors import ServerError


def test_renewal_a_minute_before_a_twenty_minute_token_expires() -> None:
    """A 1200 s token is renewed 60 s early; a 20 s token a quarter early."""
    assert renew_at(1000.0, 1200) == 1000.0 + 1140
    assert renew_at(0.0, 20) == 15.0
    assert renew_at(0.0, 0) == 0.0


def test_needs_renewal() -> None:
    """No token or a token past its renewal time needs a new one."""
    assert needs_renewal(None, 0.0)
    assert not needs_renewal(Token("t", 100.0), 99.9)
    assert needs_renewal(Token("t", 100.0), 100.0)


def test_token_source_renews_proactively_with_a_fake_clock() -> None:
    """The same token is reused until its renewal time, then a new one is fetched."""
    now = [0.0]
    issued = iter(["a", "b", "c"])
    source = TokenSource(lambda: (next(issued), 1200), clock=lambda: now[0])
    assert source.get() == "a"
    now[0] = 1139.0
    assert source.get() == "a"
    now[0] = 1140.0
    assert source.get() == "b"
    assert source.fetched == 2


def test_invalidate_forces_a_new_token_only_for_the_refused_one() -> None:
    """A 401 on token `a` drops it; a stale report about an older token changes nothing."""
    issued = iter(["a", "b"])
    source = TokenSource(lambda: (next(issued), 1200), clock=lambda: 0.0)
    assert source.get() == "a"
    source.invalidate("old")
    assert source.get() == "a"
    source.invalidate("a")
    assert source.get() == "b"


def test_token_response_parsing() -> None:
    """The RFC 6749 answer gives token and lifetime; a body without a token is a server error."""
    ok = httpx.Response(200, json={"access_token": "T", "token_type": "bearer", "expires_in": 1200})
    assert parse_token_response(ok) == ("T", 1200.0)
    no_ttl = httpx.Response(200, json={"Access_Token": "T"})
    assert parse_token_response(no_ttl) == ("T", 1200.0)
    with pytest.raises(ServerError, match="access_token"):
        parse_token_response(httpx.Response(200, text="<html>"))

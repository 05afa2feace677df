"""Webhook signature verification of the PMS connector (known vectors, replay window)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tolken.connectors.pms import WebhookRejected, sign_webhook, verify_webhook

SECRET = "whsec-test"
BODY = b'{"seq":7,"type":"customer","id":"c_1","op":"upsert"}'
TS = 1_700_000_000
# Computed independently with `openssl dgst -sha256 -hmac whsec-test` over "1700000000." + BODY.
KNOWN = "sha256=290e84c165e8b20bbfc945e28b3318111b3b149b31bf294b3dd038f988f90656"


def _headers(signature: str = KNOWN, ts: int = TS) -> dict[str, str]:
    return {"X-PMS-Timestamp": str(ts), "X-PMS-Signature": signature}


def test_known_vector_signature_is_accepted() -> None:
    """A delivery signed as the contract says is accepted and its timestamp returned."""
    assert verify_webhook(SECRET, _headers(), BODY, now=TS + 10) == TS


def test_sign_webhook_matches_an_openssl_vector() -> None:
    """sign_webhook produces the contract's exact header values (checked against openssl)."""
    assert sign_webhook("secret", b"{}", timestamp=1) == {
        "X-PMS-Timestamp": "1",
        "X-PMS-Signature": "sha256="
        "1122767b193110cfec322b6f199b599edbf608ed087f2d27afb0b97d99523908",
    }
    assert sign_webhook(SECRET, BODY, timestamp=TS)["X-PMS-Signature"] == KNOWN


def test_header_names_are_case_insensitive() -> None:
    """Lower-case header names (as ASGI servers give them) verify the same."""
    headers = {k.lower(): v for k, v in _headers().items()}
    assert verify_webhook(SECRET, headers, BODY, now=TS) == TS


@pytest.mark.parametrize(
    ("headers", "body", "secret", "reason"),
    [
        (_headers(), BODY + b" ", SECRET, "signature does not match"),
        (_headers(), BODY, "other-secret", "signature does not match"),
        (_headers(KNOWN[:-1] + "0"), BODY, SECRET, "signature does not match"),
        (_headers(KNOWN.removeprefix("sha256=")), BODY, SECRET, "does not start with sha256="),
        ({"X-PMS-Signature": KNOWN}, BODY, SECRET, "missing X-PMS-Timestamp"),
        ({"X-PMS-Timestamp": str(TS)}, BODY, SECRET, "missing X-PMS-Signature"),
        (_headers(ts=TS) | {"X-PMS-Timestamp": "soon"}, BODY, SECRET, "not unix seconds"),
    ],
)
def test_bad_deliveries_are_rejected_with_a_reason(
    headers: dict[str, str], body: bytes, secret: str, reason: str
) -> None:
    """Tampered bodies, wrong secrets or malformed headers are refused, saying why."""
    with pytest.raises(WebhookRejected) as info:
        verify_webhook(secret, headers, body, now=TS)
    assert reason in info.value.reason


def test_old_timestamp_is_a_replay() -> None:
    """A correctly signed delivery older than five minutes is rejected as stale."""
    verify_webhook(SECRET, _headers(), BODY, now=TS + 300)
    with pytest.raises(WebhookRejected, match="301 s old"):
        verify_webhook(SECRET, _headers(), BODY, now=TS + 301)


def test_future_timestamp_is_rejected() -> None:
    """A timestamp more than five minutes ahead of our clock is rejected too."""
    with pytest.raises(WebhookRejected, match="in the future"):
        verify_webhook(SECRET, _headers(), BODY, now=TS - 301)


def test_sign_then_verify_round_trip_with_the_clock() -> None:
    """What sign_webhook produces now verifies now, with bytes or str secrets."""
    headers = sign_webhook(b"k", BODY)
    assert verify_webhook("k", headers, BODY) > 0


def test_rejection_never_contains_the_secret() -> None:
    """The reason shown to users and logs does not leak the shared secret."""
    with pytest.raises(WebhookRejected) as info:
        verify_webhook(SECRET, _headers(), b"x", now=TS)
    assert SECRET not in str(info.value)


@given(
    secret=st.text(min_size=1, max_size=40),
    body=st.binary(max_size=200),
    ts=st.integers(min_value=0, max_value=2**40),
    flip=st.integers(min_value=0),
)
def test_any_signed_body_verifies_and_any_changed_byte_does_not(
    secret: str, body: bytes, ts: int, flip: int
) -> None:
    """Whatever the secret, body and time, a signed delivery verifies and a tampered one fails."""
    headers = sign_webhook(secret, body, timestamp=ts)
    assert verify_webhook(secret, headers, body, now=ts) == ts
    tampered = bytearray(body + b"x")
    tampered[flip % len(tampered)] ^= 0x01
    with pytest.raises(WebhookRejected):
        verify_webhook(secret, headers, bytes(tampered), now=ts)

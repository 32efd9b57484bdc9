from __future__ import annotations

import pytest

from gatehub.protocols import alink


def test_the_protocols_md_test_vector() -> None:
    sig = alink.sign(
        "oLyaKqVxtRvjH284LdhqVgVUx1UPy6zq", "hmacsha1", "SN1928339", "light1983432", "a14Xib5kdYd", "1539421321846"
    )
    assert sig == "b2488041f64f425016b467ee1c94959ebd592ad1"


def test_client_id_and_username_parsing() -> None:
    cid = alink.parse_client_id("SN1928339|securemode=3,signmethod=hmacsha256,timestamp=1539421321846|")
    assert cid is not None
    assert (cid.client_id, cid.sign_method, cid.timestamp) == ("SN1928339", "hmacsha256", "1539421321846")
    assert alink.parse_client_id("plain-client") is None
    assert alink.parse_username("light1983432&a14Xib5kdYd") == ("light1983432", "a14Xib5kdYd")
    assert alink.parse_username("token-only") is None


@pytest.mark.parametrize("method", ["hmacsha1", "hmacsha256", "hmacmd5", "HmacSHA256"])
def test_every_method_verifies_with_and_without_timestamp(method: str) -> None:
    for ts in ("1539421321846", None):
        sig = alink.sign("secret", method, "c1", "dn", "pk", ts)
        assert alink.verify("secret", method, "c1", "dn", "pk", ts, sig.upper())
        assert not alink.verify("secret2", method, "c1", "dn", "pk", ts, sig)
        assert not alink.verify("secret", method, "c1", "dn", "pk", "1", sig)
    assert not alink.verify("secret", "hmacsha512", "c1", "dn", "pk", None, "00")


def test_timestamps_in_seconds_or_milliseconds() -> None:
    assert alink.timestamp_ms("1539421321") == 1539421321000
    assert alink.timestamp_ms("1539421321846") == 1539421321846
    assert alink.timestamp_ms("abc") is None

"""The pure parts of /v1/authz: whose X-Forwarded-For is believed, what
counts as a key in a query string, and header values a gateway can carry."""

from __future__ import annotations

import pytest

from keyops.api.authz import AddressSet, _header_value, client_address, key_in_query
from keyops.domain import keyformat


def test_client_address_walks_forwarded_for_from_the_right() -> None:
    proxies = AddressSet(["10.0.0.0/8", "2001:db8::/32"])
    assert client_address("10.0.0.1", b"203.0.113.9", proxies) == "203.0.113.9"
    assert client_address("10.0.0.1", b"198.51.100.1, 203.0.113.9, 10.2.2.2", proxies) == "203.0.113.9"
    assert client_address("2001:db8::1", b"2001:db8::2, 2001:db8::3", proxies) == "2001:db8::2"  # all trusted
    assert client_address("10.0.0.1", b"203.0.113.9, garbage", proxies) == "10.0.0.1"
    assert client_address("10.0.0.1", b"garbage, 203.0.113.9", proxies) == "203.0.113.9"
    # An untrusted peer, or no trusted proxies at all: the header is ignored.
    assert client_address("192.0.2.1", b"203.0.113.9", proxies) == "192.0.2.1"
    assert client_address("10.0.0.1", b"203.0.113.9", AddressSet([])) == "10.0.0.1"
    assert "not-an-ip" not in proxies and "" not in proxies


@pytest.mark.parametrize(
    ("uri", "refused"),
    [
        (b"/v1/chat", False),
        (b"/v1/chat?", False),
        (b"/v1/chat?page=2&q=hello", False),
        (b"/v1/chat?api_key=anything", True),
        (b"/v1/chat?Access_Token=x", True),
        (b"/v1/chat?API%5FKEY=x", True),
        (b"/v1/chat?q={key}", True),
        (b"/v1/chat?q={escaped}", True),
        (b"/v1/chat?{key}", True),
    ],
)
def test_key_in_query(uri: bytes, refused: bool) -> None:
    # Generated here, not at collection: test ids must be the same in every xdist worker.
    key = keyformat.generate("kops_live").plaintext
    uri = uri.replace(b"{key}", key.encode()).replace(b"{escaped}", key.replace("_", "%5F").encode())
    assert key_in_query(uri) is refused


def test_header_values_stay_on_one_line() -> None:
    assert _header_value("team/api") == b"team/api"
    assert _header_value("Zoë") == b"Zo%C3%AB"
    assert b"\r" not in _header_value("a\r\nX-Injected: 1") and b"\n" not in _header_value("a\r\nb")

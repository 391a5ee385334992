"""The client's address behind trusted proxies (bot/proxies.py): dense rules, tested directly; the console's
login tests (tests/console/test_security.py) use them through the real app."""

from __future__ import annotations

import pytest

from bot.proxies import client_address, parse_address, parse_networks
from bot.settings import Settings

TRUSTED = parse_networks("127.0.0.1, 10.0.0.0/8, ::1, fd00::/8")


@pytest.mark.parametrize(
    ("peer", "header", "expected"),
    [
        ("203.0.113.9", ["198.51.100.1"], "203.0.113.9"),  # an untrusted peer: its header means nothing
        ("127.0.0.1", [], "127.0.0.1"),  # a trusted proxy that sent no header
        ("127.0.0.1", ["198.51.100.1"], "198.51.100.1"),
        ("127.0.0.1", ["6.6.6.6, 198.51.100.1"], "198.51.100.1"),  # the client's own entry is ignored
        ("127.0.0.1", ["6.6.6.6, 198.51.100.1, 10.1.2.3"], "198.51.100.1"),  # two proxies in a chain
        ("127.0.0.1", ["6.6.6.6", "198.51.100.1"], "198.51.100.1"),  # the header repeated
        ("127.0.0.1", ["198.51.100.1:51234"], "198.51.100.1"),  # with a port
        ("127.0.0.1", ["[2001:db8::7]:443"], "2001:db8::7"),
        ("::1", ["2001:db8::7"], "2001:db8::7"),
        ("::ffff:127.0.0.1", ["198.51.100.1"], "198.51.100.1"),  # IPv4-mapped peer
        ("127.0.0.1", ["garbage, 10.1.2.3"], "10.1.2.3"),  # garbage: stop at the last address vouched for
        ("127.0.0.1", ["10.1.2.3, 10.9.9.9"], "10.1.2.3"),  # only proxies: the farthest one
        ("127.0.0.1", [" , "], "127.0.0.1"),
        (None, ["198.51.100.1"], "unknown"),
    ],
)
def test_client_address(peer: str | None, header: list[str], expected: str) -> None:
    assert client_address(peer, header, TRUSTED) == expected


def test_without_trusted_proxies_the_header_is_ignored() -> None:
    assert client_address("127.0.0.1", ["198.51.100.1"], ()) == "127.0.0.1"


def test_parse_address() -> None:
    assert str(parse_address(" 198.51.100.1 ")) == "198.51.100.1"
    assert parse_address("unknown") is None and parse_address("") is None and parse_address("1.2.3.4.5") is None


def test_a_wrong_trusted_proxy_stops_start_up() -> None:
    with pytest.raises(ValueError, match="not an IP address"):
        Settings(_env_file=None, trusted_proxies="10.0.0.0/8, proxy.internal")  # type: ignore[call-arg]
    assert len(Settings(_env_file=None, trusted_proxies="10.0.0.0/8;127.0.0.1").trusted_proxy_networks) == 2  # type: ignore[call-arg]

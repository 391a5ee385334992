"""The client's real address when Yezhu runs behind reverse proxies (nginx, a cloud load balancer).

Behind a proxy every request comes from the proxy's address, so anything keyed on the address (the
console's login throttle, audit lines) would lump every client together. A proxy writes the client's
address into a header (``X-Forwarded-For``, appending to what the client sent; or ``X-Real-IP``), but a
client can send that header too, so it is believed only when the TCP peer is a configured trusted
proxy (``YEZHU_TRUSTED_PROXIES``), and then read from the right: each trusted proxy appended the
address it saw, and the first address that is not a trusted proxy is the client. Entries further left
were written by the client and are ignored (what Werkzeug's ``ProxyFix`` and nginx's
``real_ip_recursive`` do).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(spec: str) -> tuple[IPNetwork, ...]:
    """``"10.0.0.0/8, 127.0.0.1, ::1"`` → networks; a wrong entry stops start-up (ValueError)."""
    networks = []
    for item in spec.replace(";", ",").split(","):
        item = item.strip()
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"YEZHU_TRUSTED_PROXIES: {item!r} is not an IP address or network") from None
    return tuple(networks)


def parse_address(value: str) -> IPAddress | None:
    """An address as proxies write it: ``1.2.3.4``, ``1.2.3.4:5678``, ``2001:db8::1``, ``[2001:db8::1]:80``."""
    value = value.strip().strip('"')
    if value.startswith("["):
        value = value[1 : value.find("]")] if "]" in value else value
    elif value.count(":") == 1:  # IPv4 with a port
        value = value.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: IPAddress, networks: Sequence[IPNetwork]) -> bool:
    return any(address in network for network in networks)


def client_address(peer: str | None, header_values: Iterable[str], networks: Sequence[IPNetwork]) -> str:
    """The client's address: the TCP ``peer``, or -- when the peer is a trusted proxy -- the rightmost
    address in the proxy header that is not itself a trusted proxy."""
    peer_address = parse_address(peer or "")
    if peer_address is None:
        return peer or "unknown"
    if not networks or not _trusted(peer_address, networks):
        return str(peer_address)
    hops = [hop for value in header_values for hop in value.split(",") if hop.strip()]
    nearest = peer_address
    for hop in reversed(hops):
        address = parse_address(hop)
        if address is None:  # garbage no proxy of ours wrote: stop at the last address we can vouch for
            break
        if not _trusted(address, networks):
            return str(address)
        nearest = address
    return str(nearest)

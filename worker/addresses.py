"""Which network addresses a download may reach, and resolving a host name exactly once.

An address is allowed when it is inside one of the configured allow-list networks, or when it
is a public unicast address. IPv6 forms that carry an IPv4 address (IPv4-mapped, NAT64, 6to4,
Teredo) are judged by the IPv4 address inside. `is_global` alone is not enough on Python 3.11:
it calls multicast, 64:ff9b::/96 and 2002::/16 global, so the other flags are checked too.
Cloud metadata endpoints are refused even when an allow-list network covers them.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence

from afterimage.errors import TransientDownloadError, UnsafeUrlError

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean
        "fd00:ec2::254",  # AWS over IPv6
        "100.100.100.200",  # Alibaba Cloud
        "168.63.129.16",  # Azure wire server (a public address)
        "192.0.0.192",  # Oracle Cloud
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # the well-known prefix; local-use ones are refused


def address_allowed(address: Address, allow_cidrs: Sequence[Network] = ()) -> bool:
    """Whether a download may connect to `address`."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address in METADATA_ADDRESSES:
        return False
    if any(address.version == net.version and address in net for net in allow_cidrs):
        return True
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return all(_public(v4) and v4 not in METADATA_ADDRESSES for v4 in embedded)
        if int(address) >> 32 == 0:  # ::/96, the deprecated IPv4-compatible form, and ::, ::1
            return False
    return _public(address)


def resolve_allowed(host: str, port: int, allow_cidrs: Sequence[Network]) -> list[Address]:
    """Resolve `host` once; every address it names must be allowed, else UnsafeUrlError."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise TransientDownloadError(f"cannot resolve host {host!r}: {exc}") from exc
    addresses: list[Address] = []
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address_allowed(address, allow_cidrs):
            raise UnsafeUrlError(
                f"host {host!r} resolves to {address}, a non-public address (to fetch from it, "
                f"add its network to AFTERIMAGE_DOWNLOAD_ALLOW_CIDRS)")
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise TransientDownloadError(f"host {host!r} resolves to no address")
    return addresses


def _public(address: Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.is_site_local:
        return False
    return address.is_global and not (
        address.is_multicast
        or address.is_private
        or address.is_reserved
        or address.is_loopback
        or address.is_link_local
        or address.is_unspecified
    )


def _embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address] | None:
    if address in _NAT64:
        return [ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)]
    if address.sixtofour is not None:
        return [address.sixtofour]
    if address.teredo is not None:
        return list(address.teredo)
    return None

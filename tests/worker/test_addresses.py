"""The address rules for downloads, checked directly on every class of address."""

from __future__ import annotations

import ipaddress

import pytest

from afterimage.errors import UnsafeUrlError
from worker.addresses import address_allowed, resolve_allowed

REFUSED = [
    "10.0.0.1",
    "172.16.0.1",
    "192.168.1.1",
    "169.254.169.254",  # cloud metadata
    "::1",
    "::ffff:127.0.0.1",  # IPv4-mapped loopback
    "64:ff9b::7f00:1",  # NAT64 of loopback
    "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
    "64:ff9b:1::808:808",  # local-use NAT64 prefix
    "2002:7f00:1::",  # 6to4 of loopback
    "2002:a9fe:a9fe::",  # 6to4 of the metadata address
    "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo whose client is 127.0.0.1
    "fe80::1",
    "224.0.0.1",
    "ff0e::1",  # global-scope multicast: is_global says True
    "0.0.0.0",
    "::",
    "fd00:ec2::254",  # cloud metadata over IPv6
    "fc00::1",
    "fec0::1",  # deprecated site-local
    "::7f00:1",  # IPv4-compatible
    "::808:808",
    "100.64.0.1",  # carrier-grade NAT
    "100.100.100.200",  # Alibaba metadata
    "168.63.129.16",  # Azure wire server
    "198.18.0.1",
    "192.0.2.1",
    "2001:db8::1",
    "240.0.0.1",
    "255.255.255.255",
]
ALLOWED = ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "64:ff9b::808:808", "2002:808:808::"]


@pytest.mark.parametrize("address", REFUSED)
def test_non_public_addresses_are_refused(address: str) -> None:
    assert not address_allowed(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ALLOWED)
def test_public_addresses_are_allowed(address: str) -> None:
    assert address_allowed(ipaddress.ip_address(address))


def test_the_allow_list_opens_its_networks_only() -> None:
    allow = [ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("10.1.0.0/16")]
    for address in ("127.0.0.1", "127.9.9.9", "::ffff:127.0.0.1", "10.1.2.3"):
        assert address_allowed(ipaddress.ip_address(address), allow), address
    for address in ("10.2.0.1", "::1", "::7f00:1", "192.168.1.1", "64:ff9b::7f00:1"):
        assert not address_allowed(ipaddress.ip_address(address), allow), address


def test_metadata_addresses_stay_refused_inside_allowed_networks() -> None:
    allow = [ipaddress.ip_network("169.254.0.0/16"), ipaddress.ip_network("fd00::/8")]
    assert address_allowed(ipaddress.ip_address("169.254.1.1"), allow)
    assert not address_allowed(ipaddress.ip_address("169.254.169.254"), allow)
    assert not address_allowed(ipaddress.ip_address("fd00:ec2::254"), allow)


def test_resolving_checks_every_address() -> None:
    with pytest.raises(UnsafeUrlError, match="'localhost' resolves to"):
        resolve_allowed("localhost", 80, ())
    allow = [ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")]
    assert all(a.is_loopback for a in resolve_allowed("localhost", 80, allow))

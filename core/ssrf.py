"""Server-side request forgery guard for URLs the service calls on a tenant's behalf.

A tenant names a URL (an outbound webhook endpoint, a provider host); the service then connects
to it from inside the deployment's network. Without a check a tenant could make the service talk
to its own database, the cloud metadata service (169.254.169.254) or anything else reachable
only from inside. So every address a host name resolves to must be a public unicast address:
not private, loopback, link-local, multicast, reserved, unspecified or shared (carrier-grade
NAT), in IPv4 or IPv6 (IPv4-mapped IPv6 addresses are judged as their IPv4 address).

DNS can change between a check and a connection, so callers check when a URL is saved AND again
on every connection (`UnsafeTargetError` from the resolver the connection uses: see
activities.webhook_delivery). An operator may allow private targets (a dev stack, the tests).
This module is pure: the only I/O is `check_host`'s name resolution.
"""

import ipaddress
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class UnsafeTargetError(ValueError):
    """The host is not a public internet address (or does not resolve at all)."""


def is_public(address: IpAddress) -> bool:
    """Whether a connection to `address` leaves the deployment's own networks."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return not (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or not address.is_global
    )


def check_addresses(host: str, addresses: Iterable[str], allow_private: bool) -> list[str]:
    """The addresses `host` resolved to, if every one may be connected to; else UnsafeTargetError.

    All of them must be public, not just one: a client may connect to any of them."""
    parsed: list[str] = []
    for raw in addresses:
        try:
            address = ipaddress.ip_address(raw.split("%", 1)[0])
        except ValueError as err:
            raise UnsafeTargetError(f"{host} resolved to something that is not an address") from err
        if not allow_private and not is_public(address):
            raise UnsafeTargetError(f"{host} resolves to a non-public address ({address})")
        parsed.append(str(address))
    if not parsed:
        raise UnsafeTargetError(f"{host} does not resolve to any address")
    return parsed


def literal_address(host: str) -> IpAddress | None:
    """The address a host names literally (`10.0.0.1`, `[::1]`), else None."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def check_host(host: str, allow_private: bool) -> None:
    """Raise UnsafeTargetError unless every address of `host` is public (or private ones are allowed).

    Resolves the name with the system resolver (blocking: async callers run it in a thread or use
    `check_addresses` with their own resolver's answer)."""
    if not host:
        raise UnsafeTargetError("the URL names no host")
    literal = literal_address(host)
    if literal is not None:
        check_addresses(host, [str(literal)], allow_private)
        return
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError) as err:
        raise UnsafeTargetError(f"{host} does not resolve") from err
    check_addresses(host, [str(info[4][0]) for info in infos], allow_private)


def url_host(url: str, allow_http: bool) -> str:
    """The host a URL names, if its shape is acceptable: https (or http when allowed), a host, no
    credentials in it; else UnsafeTargetError. Says nothing about where the host points."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - a port out of range raises here
    except ValueError as err:
        raise UnsafeTargetError(f"not a valid URL: {err}") from err
    schemes = ("https", "http") if allow_http else ("https",)
    if parts.scheme not in schemes:
        raise UnsafeTargetError("the URL must use " + " or ".join(schemes))
    if parts.username is not None or parts.password is not None:
        raise UnsafeTargetError("the URL must not carry credentials")
    if not parts.hostname:
        raise UnsafeTargetError("the URL names no host")
    return parts.hostname

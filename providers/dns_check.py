"""What the service asks DNS: a domain's TXT records (DKIM verification) and where a provider host
points (the private-address check).

`TxtResolver` is the interface the API's verification uses; production reads DNS with dnspython
(`DnsTxtResolver`: the system's resolvers, or `CAMPAIGNS_DNS_NAMESERVERS`), tests point it at a
small DNS server of their own or replace the dependency.

`check_host`: a tenant names the SMTP relay or SMS API its messages go through, so a tenant could
otherwise make our workers connect to anything inside our network (the database, the metadata
service at 169.254.169.254). A host that is, or resolves to, anything but public unicast addresses
(the same rule as outbound webhooks, core.ssrf) is refused unless the operator allows it
(`CAMPAIGNS_PROVIDER_HOSTS_ALLOW_PRIVATE`, set by the dev stack and the tests, whose sinks listen
on 127.0.0.1). It is checked when an account is saved and again by each page that sends through it.
"""

import asyncio
import socket
from typing import Protocol

import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.resolver

from core.ssrf import UnsafeTargetError, check_addresses


class DnsUnavailable(Exception):
    """DNS did not answer (timeout, no server): try again later, nothing is known."""


class TxtResolver(Protocol):
    async def txt(self, name: str) -> list[str]:
        """The TXT records at `name`, each record's strings joined; [] when there are none."""
        ...


class DnsTxtResolver:
    """TXT lookups through dnspython; `nameservers` ("host" or "host:port", comma-separated)
    replaces the system's resolvers when given."""

    def __init__(self, nameservers: str = "", timeout: float = 5.0) -> None:
        self._resolver = dns.asyncresolver.Resolver(configure=not nameservers.strip())
        servers = [_server(s.strip()) for s in nameservers.split(",") if s.strip()]
        if servers:
            self._resolver.nameservers = servers
        self._resolver.lifetime = timeout

    async def txt(self, name: str) -> list[str]:
        try:
            answer = await self._resolver.resolve(name, "TXT")
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except (dns.exception.Timeout, dns.resolver.NoNameservers) as err:
            raise DnsUnavailable(str(err)) from err
        return [b"".join(record.strings).decode("utf-8", "replace") for record in answer]


def _server(spec: str) -> dns.nameserver.Nameserver:
    """`host` or `host:port` (an IPv6 address in brackets when it has a port)."""
    host, sep, port = spec.rpartition(":")
    if not sep or (":" in host and not host.startswith("[")):
        return dns.nameserver.Do53Nameserver(spec, 53)
    return dns.nameserver.Do53Nameserver(host.strip("[]"), int(port))


class UnsafeHost(ValueError):
    """A provider host that points into a private network (or does not resolve)."""


async def check_host(host: str, allow_private: bool) -> None:
    """Raise UnsafeHost when `host` is or resolves to an address outside the public internet."""
    if allow_private:
        return
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as err:
        raise UnsafeHost(f"the host {host!r} does not resolve") from err
    try:
        check_addresses(host, [str(info[4][0]) for info in infos], allow_private)
    except UnsafeTargetError as err:
        raise UnsafeHost(
            f"{err}: a provider host must be a public address; an operator may allow private ones "
            "with CAMPAIGNS_PROVIDER_HOSTS_ALLOW_PRIVATE"
        ) from None

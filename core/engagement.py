"""Human or machine: how an open or a click is classified when the tracking endpoint records it.

Open and click rates steer campaigns, A/B winners and follow-ups, and machines inflate them: Apple
Mail Privacy Protection and Gmail's image proxy fetch the pixel of every delivered message whether
anyone looks, and corporate link scanners follow every link of a message seconds after delivery.
So every open and click is stored with a class (`human` | `machine`) and the reason, and the stats
count both (README "Honest engagement", docs/engagement.md).

An interaction is `machine` when, in this order:

1. the request says so (`request_verdict`, pure, here): a HEAD request (a scanner checking a link;
   a person's mail client GETs), no User-Agent at all, a User-Agent of a known proxy, scanner or
   automation tool, or a client address in a known proxy's or scanner's network. The known sources
   are data, `core/engagement_sources.json` (each with the page it was taken from and the date it
   was checked), loaded once per process.
2. it came within `SOON_AFTER_SENT` of the message's sent time in the ledger (a prefetch on
   delivery; nobody reads that fast). The database applies this rule as it stores the row
   (db.interactions), because the sent time is there and the hot path must not pay a read for it.
3. for clicks, another link of the same message was followed within `LINK_BURST` of it (a scanner
   following all the links; a person reads, then clicks one link). Applied in the database right
   after the batch is stored, to the clicks of that message the roll-up has not counted yet
   (db.interactions.mark_link_bursts); the background roll-up waits `LINK_BURST` before counting a
   click so the whole burst is classified first (api.rollup).

Otherwise it is `human`. Nothing here does I/O once the data is loaded.
"""

import ipaddress
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from functools import cache
from pathlib import Path

SOURCES_FILE = Path(__file__).with_name("engagement_sources.json")

# A documented threshold each: a prefetching proxy or scanner acts within a few seconds of delivery,
# a person does not open, read and click that fast.
SOON_AFTER_SENT = timedelta(seconds=10)
LINK_BURST = timedelta(seconds=10)

OPENED, CLICKED = "OPENED", "CLICKED"


class EngagementClass(StrEnum):
    HUMAN = "human"
    MACHINE = "machine"


class Reason(StrEnum):
    """Why an interaction got its class (`classReason`); a known source adds `:<its name>`."""

    NO_SIGNAL = "no-machine-signal"  # human: nothing says machine
    HEAD = "head-request"
    NO_USER_AGENT = "no-user-agent"
    USER_AGENT = "user-agent"  # + ":<source>"
    NETWORK = "network"  # + ":<source>"
    SOON_AFTER_SENT = "soon-after-sent"
    LINK_BURST = "link-burst"


@dataclass(frozen=True)
class Verdict:
    klass: EngagementClass
    reason: str


@dataclass(frozen=True)
class KnownSource:
    """One entry of the data file: a proxy, image cache or scanner, and how to recognise it."""

    name: str
    applies: frozenset[str]
    user_agents: tuple[str, ...]  # lower-cased substrings
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    networks_apply: frozenset[str]  # the kinds the networks mark (`networksApply`, else `applies`)
    source: str
    checked: str


def parse_sources(document: dict[str, object]) -> tuple[KnownSource, ...]:
    """The entries of an engagement-sources document; ValueError when one is malformed (no source
    or date, a bad network), so a bad edit fails the tests and the start instead of misclassifying."""
    entries = document.get("entries")
    if not isinstance(entries, list):
        raise ValueError("engagement sources: `entries` must be a list")
    out = []
    for raw in entries:
        if (
            not isinstance(raw, dict)
            or not raw.get("name")
            or not raw.get("source")
            or not raw.get("checked")
        ):
            raise ValueError(f"engagement source needs name, source and checked: {raw!r}")
        applies = frozenset(raw.get("applies") or ())
        networks_apply = frozenset(raw.get("networksApply") or applies)
        if not applies or not applies | networks_apply <= {OPENED, CLICKED}:
            raise ValueError(f"engagement source {raw['name']}: `applies` must name OPENED and/or CLICKED")
        out.append(
            KnownSource(
                name=str(raw["name"]),
                applies=applies,
                user_agents=tuple(str(ua).lower() for ua in raw.get("userAgents") or ()),
                networks=tuple(ipaddress.ip_network(str(n)) for n in raw.get("networks") or ()),
                networks_apply=networks_apply,
                source=str(raw["source"]),
                checked=str(raw["checked"]),
            )
        )
    return tuple(out)


@cache
def known_sources() -> tuple[KnownSource, ...]:
    """The repository's data file, read once per process."""
    return parse_sources(json.loads(SOURCES_FILE.read_text(encoding="utf-8")))


def _address(host: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if not host:
        return None
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None  # not an address (a test client's name, a unix socket)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _source_match(
    kind: str,
    agent: str,
    address: ipaddress.IPv4Address | ipaddress.IPv6Address | None,
    sources: Sequence[KnownSource],
) -> str | None:
    for source in sources:
        if kind in source.applies and any(token in agent for token in source.user_agents):
            return f"{Reason.USER_AGENT}:{source.name}"
        if (
            address is not None
            and kind in source.networks_apply
            and any(address in network for network in source.networks)
        ):
            return f"{Reason.NETWORK}:{source.name}"
    return None


def request_verdict(
    kind: str,
    method: str,
    user_agent: str | None,
    client_host: str | None,
    sources: Sequence[KnownSource] | None = None,
) -> Verdict | None:
    """`machine` and why, when the request alone shows a machine (rule 1); None when it does not
    (the database then applies the timing rules, and else stores `human`).

    `client_host` is the address the app sees (the ASGI client: behind a proxy, uvicorn's
    `--proxy-headers --forwarded-allow-ips` makes it the caller's, as for the rate limits)."""
    if method.upper() == "HEAD":
        return Verdict(EngagementClass.MACHINE, Reason.HEAD.value)
    agent = (user_agent or "").strip().lower()
    if not agent:
        return Verdict(EngagementClass.MACHINE, Reason.NO_USER_AGENT.value)
    reason = _source_match(
        kind, agent, _address(client_host), known_sources() if sources is None else sources
    )
    return None if reason is None else Verdict(EngagementClass.MACHINE, reason)

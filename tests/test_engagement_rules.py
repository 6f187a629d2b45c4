"""The request rules of core.engagement and its data file: pure, no stack (README "Honest engagement").

The timing rules (soon after sending, link bursts) live in the database and are tested on the real
stack in tests/test_engagement_stack.py.
"""

import ipaddress
from datetime import date

import pytest

from core.engagement import (
    CLICKED,
    OPENED,
    EngagementClass,
    known_sources,
    parse_sources,
    request_verdict,
)

MAIL_CLIENT = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)"
OUTLOOK = "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17928; Pro)"
PERSON_ADDRESS = "203.0.113.7"  # TEST-NET-3: no known source


def test_every_known_source_names_its_page_and_a_real_check_date() -> None:
    sources = known_sources()
    names = {s.name for s in sources}
    for wanted in (
        "apple-mail-privacy-protection",
        "google-image-proxy",
        "yahoo-mail-proxy",
        "microsoft-safe-links",
        "barracuda",
        "proofpoint",
        "mimecast",
        "generic-automation",
    ):
        assert wanted in names
    for source in sources:
        assert source.source.startswith("https://"), source.name
        assert date.fromisoformat(source.checked) <= date.today(), source.name
        assert source.user_agents or source.networks, source.name
    apple = next(s for s in sources if s.name == "apple-mail-privacy-protection")
    assert ipaddress.ip_network("17.0.0.0/8") in apple.networks and apple.applies == {OPENED}


@pytest.mark.parametrize(
    ("kind", "method", "agent", "host", "reason"),
    [
        (
            OPENED,
            "GET",
            "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)",
            PERSON_ADDRESS,
            "user-agent:google-image-proxy",
        ),
        (
            OPENED,
            "GET",
            "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html",
            PERSON_ADDRESS,
            "user-agent:yahoo-mail-proxy",
        ),
        (OPENED, "GET", "Mozilla/5.0", "17.58.101.12", "network:apple-mail-privacy-protection"),
        (OPENED, "GET", MAIL_CLIENT, "66.249.84.10", "network:google-image-proxy"),
        (OPENED, "GET", MAIL_CLIENT, "::ffff:17.1.2.3", "network:apple-mail-privacy-protection"),
        (CLICKED, "GET", "Mozilla/5.0 Barracuda Sentinel", PERSON_ADDRESS, "user-agent:barracuda"),
        (CLICKED, "GET", MAIL_CLIENT, "148.163.130.2", "network:proofpoint"),
        (CLICKED, "GET", MAIL_CLIENT, "40.107.22.1", "network:microsoft-safe-links"),
        (
            CLICKED,
            "GET",
            "Mozilla/5.0 (X11) HeadlessChrome/120.0",
            PERSON_ADDRESS,
            "user-agent:generic-automation",
        ),
        (CLICKED, "GET", "python-requests/2.31", PERSON_ADDRESS, "user-agent:generic-automation"),
        (CLICKED, "HEAD", MAIL_CLIENT, PERSON_ADDRESS, "head-request"),
        (OPENED, "HEAD", MAIL_CLIENT, PERSON_ADDRESS, "head-request"),
        (CLICKED, "GET", "", PERSON_ADDRESS, "no-user-agent"),
        (OPENED, "GET", None, PERSON_ADDRESS, "no-user-agent"),
    ],
)
def test_a_machine_is_recognised_by_its_request(
    kind: str, method: str, agent: str | None, host: str, reason: str
) -> None:
    verdict = request_verdict(kind, method, agent, host)
    assert verdict is not None and verdict.klass == EngagementClass.MACHINE
    assert verdict.reason == reason


@pytest.mark.parametrize(
    ("kind", "agent", "host"),
    [
        (OPENED, MAIL_CLIENT, PERSON_ADDRESS),
        (OPENED, OUTLOOK, PERSON_ADDRESS),  # Outlook the client is no Microsoft scanner
        (CLICKED, MAIL_CLIENT, PERSON_ADDRESS),
        # Apple's and Google's networks mark opens only: a person clicks from there too.
        (CLICKED, MAIL_CLIENT, "17.58.101.12"),
        (CLICKED, MAIL_CLIENT, "66.249.84.10"),
        (OPENED, MAIL_CLIENT, "testclient"),  # not an address: no network rule, no error
        (OPENED, MAIL_CLIENT, None),
    ],
)
def test_a_person_is_left_to_the_timing_rules(kind: str, agent: str, host: str | None) -> None:
    assert request_verdict(kind, "GET", agent, host) is None


def test_a_malformed_data_file_fails_instead_of_misclassifying() -> None:
    good = {
        "name": "x",
        "applies": [OPENED],
        "networks": ["10.0.0.0/8"],
        "source": "https://e",
        "checked": "2026-01-01",
    }
    assert parse_sources({"entries": [good]})[0].name == "x"
    for broken in (
        {**good, "source": ""},
        {**good, "checked": None},
        {**good, "applies": ["SENT"]},
        {**good, "networks": ["10.0.0.0/33"]},
    ):
        with pytest.raises(ValueError):
            parse_sources({"entries": [broken]})
    with pytest.raises(ValueError):
        parse_sources({"entries": "nope"})

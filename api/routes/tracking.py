"""Public tracking endpoints behind the links in every email: pixel, click redirect, unsubscribe.

No JWT here: the signed token in the path is the only credential (providers.tracking). A forged,
altered or foreign token records nothing and gets a harmless answer: the pixel is still served,
a click is refused with a plain 404/400 page (never redirected anywhere), an unsubscribe page
says the link is not valid.

- GET  /t/o/{token}: records OPENED (every open is an interaction, replays aside; the opener
  counts once). HEAD too (recorded as a machine's).
- GET  /t/c/{token}: records CLICKED with `linkId`/`linkUrl`, then 302 to the signed URL. HEAD
  too: a scanner's HEAD is recorded as a machine's click and still gets the redirect.
- GET  /t/u/{token}: a confirmation page with a one-button form; records nothing, because mail
  scanners prefetch links (RFC 8058 §1).
- POST /t/u/{token}: unsubscribes (the form above, and RFC 8058 one-click POSTs with the body
  `List-Unsubscribe=One-Click`): sets the channel's `*_unsubscribed_at` on the customer, so no
  later send reaches them on that channel, and records UNSUBSCRIBED once per message.

Recording is one statement and no roll-up: opens and clicks go through the process's group-commit
writer (api.tracking_writer), which inserts every waiting event in one autocommitted statement that
also checks each delivery belongs to its token's campaign (db.interactions); the answer is sent
once that statement is durable. Counters and first-of-a-kind rows are maintained off the request by
the background roll-up (api.rollup); /stats adds the interactions it has not reached yet, so it
stays exact (README "Stats"). Opens and clicks are recorded best-effort: if the database is
unreachable the error is logged and the reader still gets the pixel or the redirect. An
unsubscribe is never acknowledged unless stored.

Each open and click is classified `human` or `machine` as it is recorded (core.engagement; README
"Honest engagement"): this module gives the request's verdict (method, User-Agent, client address);
the database adds the timing rules.

Replays count once: the same link fetched by the same client (address and User-Agent) within
`CAMPAIGNS_TRACKING_DEDUPE_SECONDS` records one interaction. Mail clients and image proxies refetch,
and a script replaying one link must not grow the interactions table or the stats. The interaction's
`event_key` carries the link, a digest of the client and the window number, so the unique index on
it decides atomically (`ON CONFLICT DO NOTHING`) and a replay is neither stored nor rolled up. The
windows are fixed slots of that many seconds: two fetches across a slot boundary count twice, a
person opening the message again a minute later counts again.
"""

import hashlib
import html
import logging
import time
from datetime import UTC, datetime

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy.exc import SQLAlchemyError

from api.deps import AppState, SettingsDep, StateDep
from api.errors import loggable_error
from core.engagement import request_verdict
from core.enums import InteractionType
from db.interactions import TrackedEvent, unsubscribe_recipient
from providers.tracking import LinkKind, TrackingClaim, is_trackable_url, token_signer

log = logging.getLogger("campaigns.tracking")
router = APIRouter(prefix="/t", tags=["tracking"])

# The smallest transparent GIF (1x1).
PIXEL = bytes.fromhex(
    "47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b"
)
NO_STORE = {
    "Cache-Control": "no-store, no-cache, must-revalidate, private",
    "Pragma": "no-cache",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex, nofollow",
}


def _page(status: int, title: str, body_html: str) -> HTMLResponse:
    doc = (
        '<!doctype html><html><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title></head><body>{body_html}</body></html>"
    )
    return HTMLResponse(doc, status_code=status, headers=NO_STORE)


def _invalid_link(status: int = 404) -> HTMLResponse:
    return _page(status, "Link not valid", "<p>This link is not valid.</p>")


def replay_key(claim: TrackingClaim, request: Request, window_seconds: int) -> str | None:
    """The `event_key` shared by every fetch of this link by this client in the current window.

    Keyed on what the token asserts (not its text, which may have other spellings that verify) and on
    a digest of the client, so the key is short whatever the User-Agent. None: no deduplication.
    """
    if window_seconds <= 0:
        return None
    client = request.client.host if request.client else ""
    agent = request.headers.get("user-agent", "")
    digest = hashlib.blake2b(
        "\0".join((claim.campaign_id, claim.delivery_id, claim.link_id, client, agent)).encode(),
        digest_size=16,
    ).hexdigest()
    return f"replay:{claim.kind.value}:{digest}:{int(time.time() // window_seconds)}"


async def _record_best_effort(
    state: AppState,
    claim: TrackingClaim,
    type_: InteractionType,
    request: Request,
    metadata: dict[str, str] | None = None,
    event_key: str | None = None,
) -> None:
    """Opens and clicks are measured, not promised: a database outage must not break the email
    (no image, a dead link). It is logged (without the statement's values), and the reader still
    gets the pixel or the page. A token whose delivery is not of its campaign records nothing."""
    assert state.tracking is not None  # built with the state
    verdict = request_verdict(
        type_.value,
        request.method,
        request.headers.get("user-agent"),
        request.client.host if request.client else None,
    )
    event = TrackedEvent(
        delivery_id=claim.delivery_id,
        campaign_id=claim.campaign_id,
        type=type_.value,
        occurred_at=datetime.now(UTC),
        metadata=metadata or {},
        event_key=event_key,
        engagement_class=verdict.klass.value if verdict else None,
        class_reason=verdict.reason if verdict else None,
    )
    try:
        await state.tracking.append(event)
    except (SQLAlchemyError, RuntimeError) as err:
        log.error(
            "could not record %s for delivery %s: %s", type_.value, claim.delivery_id, loggable_error(err)
        )


@router.api_route("/o/{token}", methods=["GET", "HEAD"], include_in_schema=False)
async def open_pixel(token: str, request: Request, state: StateDep) -> Response:
    settings = state.settings  # one dependency fewer on the hottest route
    claim = token_signer(settings.tracking_secret).verify(token, LinkKind.OPEN)
    if claim is not None:
        key = replay_key(claim, request, settings.tracking_dedupe_seconds)
        await _record_best_effort(state, claim, InteractionType.OPENED, request, event_key=key)
    return Response(PIXEL, media_type="image/gif", headers=NO_STORE)


@router.api_route("/c/{token}", methods=["GET", "HEAD"], include_in_schema=False)
async def click_redirect(token: str, request: Request, state: StateDep) -> Response:
    settings = state.settings
    claim = token_signer(settings.tracking_secret).verify(token, LinkKind.CLICK)
    if claim is None:
        return _invalid_link(404)
    if not is_trackable_url(claim.url):
        return _invalid_link(400)  # signed, but not a web URL: never redirect to it
    metadata = {"linkId": claim.link_id, "linkUrl": claim.url}
    key = replay_key(claim, request, settings.tracking_dedupe_seconds)
    await _record_best_effort(state, claim, InteractionType.CLICKED, request, metadata, key)
    # The target was signed into the token when the email was built: a URL of that message.
    return RedirectResponse(claim.url, status_code=302, headers=NO_STORE)


@router.get("/u/{token}", include_in_schema=False)
async def unsubscribe_page(token: str, settings: SettingsDep) -> Response:
    if token_signer(settings.tracking_secret).verify(token, LinkKind.UNSUBSCRIBE) is None:
        return _invalid_link(404)
    form = (
        "<p>Unsubscribe from these messages?</p>"
        '<form method="post">'
        '<input type="hidden" name="List-Unsubscribe" value="One-Click">'
        '<button type="submit">Unsubscribe</button></form>'
    )
    return _page(200, "Unsubscribe", form)


@router.post("/u/{token}", include_in_schema=False)
async def unsubscribe(token: str, state: StateDep, settings: SettingsDep) -> Response:
    claim = token_signer(settings.tracking_secret).verify(token, LinkKind.UNSUBSCRIBE)
    if claim is None:
        return _invalid_link(404)
    # One statement, atomic on its own: autocommit spares the BEGIN and COMMIT round trips.
    async with state.engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        if not await unsubscribe_recipient(conn, claim.delivery_id, claim.campaign_id, datetime.now(UTC)):
            return _invalid_link(404)
    return _page(200, "Unsubscribed", "<p>You have been unsubscribed from these messages.</p>")

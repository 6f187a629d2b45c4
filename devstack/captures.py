"""`campaigns sinks`: the SMTP and SMS captures of the dev stack, plus a small page to read them.

The captures themselves are `devstack.sinks` (the same ones the tests count with); this module
binds them to fixed ports and serves what they caught as HTML (`/`) and JSON (`/emails`, `/sms`).
"""

import asyncio
import html
import signal
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from devstack.sinks import CapturedEmail, SmsSink, SmtpSink

SHOWN = 200  # newest messages listed on the page and in the JSON


@dataclass(frozen=True)
class CaptureConfig:
    host: str = "127.0.0.1"
    smtp_port: int | None = 1025  # None: no SMTP capture (e.g. mailpit does it under compose)
    sms_port: int | None = 8025
    view_port: int | None = 8026
    sms_token: str = "dev-sms-token"


def email_json(index: int, mail: CapturedEmail) -> dict[str, Any]:
    msg = mail.message
    return {
        "index": index,
        "from": mail.mail_from,
        "to": mail.rcpt_tos,
        "subject": str(msg.get("Subject", "")),
        "listUnsubscribe": msg.get("List-Unsubscribe"),
        "text": mail.part("plain"),
        "html": mail.part("html"),
    }


class CaptureView:
    """An aiohttp app over the sinks: a page that refreshes itself, and JSON for scripts."""

    def __init__(self, smtp: SmtpSink | None, sms: SmsSink | None) -> None:
        self.smtp = smtp
        self.sms = sms

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/", self._page)
        app.router.add_get("/emails", self._emails)
        app.router.add_get("/emails/{index}", self._email_page)
        app.router.add_get("/sms", self._sms)
        return app

    def _mails(self) -> list[CapturedEmail]:
        return [] if self.smtp is None else self.smtp.snapshot()

    async def _emails(self, _: web.Request) -> web.Response:
        mails = self._mails()
        first = max(0, len(mails) - SHOWN)
        data = [email_json(i, m) for i, m in enumerate(mails[first:], start=first)]
        return web.json_response({"count": len(mails), "latest": data})

    async def _sms(self, _: web.Request) -> web.Response:
        messages = [] if self.sms is None else list(self.sms.messages)
        data = [m.__dict__ for m in messages[-SHOWN:]]
        return web.json_response({"count": len(messages), "latest": data})

    async def _email_page(self, request: web.Request) -> web.Response:
        mails = self._mails()
        try:
            mail = mails[int(request.match_info["index"])]
        except (ValueError, IndexError):
            raise web.HTTPNotFound(text="no such email") from None
        headers = "".join(
            f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
            for k, v in mail.message.items()
        )
        body = (
            f"<p><a href='/'>&larr; all captures</a></p><table>{headers}</table>"
            f"<h2>Text</h2><pre>{html.escape(mail.part('plain'))}</pre>"
            # The HTML part is shown in a sandboxed frame: no scripts, no access to this page.
            f'<h2>HTML</h2><iframe sandbox srcdoc="{html.escape(mail.part("html"))}"></iframe>'
        )
        return _html("Email", body)

    async def _page(self, _: web.Request) -> web.Response:
        mails = self._mails()
        first = max(0, len(mails) - SHOWN)
        email_rows = "".join(
            f"<tr><td><a href='/emails/{i}'>{i}</a></td><td>{html.escape(', '.join(m.rcpt_tos))}</td>"
            f"<td>{html.escape(str(m.message.get('Subject', '')))}</td></tr>"
            for i, m in reversed(list(enumerate(mails[first:], start=first)))
        )
        texts = [] if self.sms is None else list(self.sms.messages)
        sms_rows = "".join(
            f"<tr><td>{html.escape(m.to)}</td><td>{html.escape(m.body)}</td>"
            f"<td><code>{html.escape(m.sid)}</code></td></tr>"
            for m in reversed(texts[-SHOWN:])
        )
        emails = (
            f"<h2>Emails ({len(mails)})</h2><table><tr><th>#</th><th>To</th><th>Subject</th></tr>"
            f"{email_rows}</table>"
            if self.smtp is not None
            else "<h2>Emails</h2><p>No SMTP capture in this process (mailpit catches mail here).</p>"
        )
        body = (
            f"{emails}"
            f"<h2>SMS ({len(texts)})</h2><table><tr><th>To</th><th>Body</th><th>Sid</th></tr>"
            f"{sms_rows}</table>"
            "<p>JSON: <a href='/emails'>/emails</a>, <a href='/sms'>/sms</a>. Newest first; "
            "the page refreshes every 5 seconds.</p>"
        )
        return _html("Captured messages", body, refresh=True)


def _html(title: str, body: str, refresh: bool = False) -> web.Response:
    meta = "<meta http-equiv='refresh' content='5'>" if refresh else ""
    style = (
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}"
        "iframe{width:100%;height:24em;border:1px solid #ccc}"
    )
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'>{meta}<title>{html.escape(title)}</title>"
        f"<style>{style}</style></head><body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )
    return web.Response(text=page, content_type="text/html")


async def run_captures(cfg: CaptureConfig) -> None:
    """Serve the captures until SIGINT/SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    smtp = SmtpSink(host=cfg.host, port=cfg.smtp_port).start() if cfg.smtp_port else None
    sms = None
    if cfg.sms_port:
        sms = await SmsSink(token=cfg.sms_token, host=cfg.host, port=cfg.sms_port).start()
    runner: web.AppRunner | None = None
    try:
        if cfg.view_port:
            runner = web.AppRunner(CaptureView(smtp, sms).app(), access_log=None)
            await runner.setup()
            await web.TCPSite(runner, cfg.host, cfg.view_port).start()
        if smtp is not None:
            print(f"SMTP capture on {cfg.host}:{smtp.port}", flush=True)
        if sms is not None:
            print(f"SMS capture on http://{cfg.host}:{sms.port}/messages (GET lists them)", flush=True)
        if runner is not None:
            print(f"Captured messages page: http://{cfg.host}:{cfg.view_port}/", flush=True)
        await stop.wait()
    finally:
        if runner is not None:
            await runner.cleanup()
        if sms is not None:
            await sms.stop()
        if smtp is not None:
            smtp.stop()

"""The SMTP pool's connections: opened by aiosmtplib (STARTTLS, AUTH), then run by
providers.smtp_session, on asyncio's loop and on uvloop (the worker's), against a real aiosmtpd
server with TLS and AUTH and against a scripted server for the replies aiosmtpd never sends."""

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import uvloop
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from providers.smtp import SmtpConfig, SmtpPool, SmtpResult, SmtpVerdict
from providers.smtp_session import dot_stuffed, envelope_address

# A message whose lines start with dots and whose line endings are mixed, as DKIM or a tenant's
# text part could leave them.
TRICKY = b"Subject: dots\r\n\r\n.starts with a dot\r\n..two\nbare LF\rbare CR\r\n.\r\nend"
TRICKY_RECEIVED = b"Subject: dots\r\n\r\n.starts with a dot\r\n..two\r\nbare LF\r\nbare CR\r\n.\r\nend\r\n"


def test_data_is_dot_stuffed_with_crlf_line_endings() -> None:
    assert dot_stuffed(b"a\r\nb\r\n") == b"a\r\nb\r\n.\r\n"
    assert dot_stuffed(b".x\r\n.\r\ny") == b"..x\r\n..\r\ny\r\n.\r\n"
    assert dot_stuffed(b"a\nb\rc") == b"a\r\nb\r\nc\r\n.\r\n"


def test_envelope_addresses_are_plain_or_checked() -> None:
    assert envelope_address("o'neil+tag@ex-ample.co.uk") == b"<o'neil+tag@ex-ample.co.uk>"
    assert envelope_address("Campaigns <c@example.com>") == b"<c@example.com>"
    # aiosmtplib's parser keeps the address and drops what would smuggle a parameter or a command.
    assert envelope_address("a@b.com> SIZE=1") == b"<a@b.com>"
    assert envelope_address("x@y\r\nRCPT TO:<z@w>") == b"<x@y>"
    for bad in ("jürgen@example.com", "a b@c.d"):
        with pytest.raises(ValueError):
            envelope_address(bad)


class _Recorder:
    def __init__(self) -> None:
        self.received: list[tuple[bool, Any, list[str], bytes]] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        self.received.append((session.ssl is not None, session.auth_data, list(envelope.rcpt_tos), content))
        return "250 2.0.0 queued as Q1"


def _authenticate(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"club", b"s3cret")
    return AuthResult(success=ok, auth_data=data.login if ok else None)


async def _send_through_tls_and_auth(port: int) -> list[SmtpResult]:
    config = SmtpConfig("127.0.0.1", port, username="club", password="s3cret", starttls=True, pool_size=1)
    pool = SmtpPool(config)
    try:
        sender = "Club <club@example.com>"
        return [await pool.send(sender, f"m{i}@example.com", TRICKY, f"<id{i}>") for i in range(3)]
    finally:
        await pool.close()


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_starttls_and_auth_then_transactions_on_the_same_connection(
    certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, loop: str
) -> None:
    key, cert = certificate
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the client's default trust store: this server
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    recorder = _Recorder()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(
        recorder,
        hostname="127.0.0.1",
        port=port,
        tls_context=server_tls,
        require_starttls=True,
        authenticator=_authenticate,
        auth_require_tls=True,
    )
    controller.start()
    try:
        sending = _send_through_tls_and_auth(port)
        results = uvloop.run(sending) if loop == "uvloop" else asyncio.run(sending)
    finally:
        controller.stop()
    assert [(r.verdict, r.detail, r.message_id) for r in results] == [
        (SmtpVerdict.ACCEPTED, "2.0.0 queued as Q1", f"<id{i}>") for i in range(3)
    ]
    assert recorder.received == [(True, b"club", [f"m{i}@example.com"], TRICKY_RECEIVED) for i in range(3)]


# A scripted server, for replies aiosmtpd does not give: multi-line answers, a 421, silence, junk.

SILENT = b""  # an answer that never comes
DEFAULT = {
    b"MAIL": b"250 2.1.0 ok\r\n",
    b"RCPT": b"250 2.1.5 ok\r\n",
    b"RSET": b"250 2.0.0 ok\r\n",
    b"DATA": b"354 go ahead\r\n",
    b".": b"250-2.0.0 ok\r\n250 2.0.0 queued as Q9\r\n",  # the end of the data
}


class _Scripted:
    """Answers each command from DEFAULT, or from `by_recipient[rcpt]` for the transaction of that
    recipient (keyed like DEFAULT); keeps the commands each connection got, and the messages.

    `pipelining`: announces PIPELINING and answers an envelope only once its MAIL, RCPT and DATA
    are all in, so a client that waits for each reply before the next command gets none."""

    def __init__(self, *, pipelining: bool = False) -> None:
        self.pipelining = pipelining
        self.by_recipient: dict[str, dict[bytes, bytes]] = {}
        self.commands: list[list[bytes]] = []
        self.messages: list[bytes] = []
        self.writers: list[asyncio.StreamWriter] = []

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        commands: list[bytes] = []
        self.commands.append(commands)
        self.writers.append(writer)
        writer.write(b"220 scripted ESMTP\r\n")
        answers = DEFAULT
        try:
            while line := await reader.readline():
                lines = [line]
                if self.pipelining and line[:4].upper() == b"MAIL":
                    lines += [await reader.readline(), await reader.readline()]
                commands.extend(x[:4].upper() for x in lines)
                for x in lines:
                    if x[:4].upper() == b"RCPT":
                        address = x.split(b"<", 1)[1].split(b">", 1)[0].decode()
                        answers = {**DEFAULT, **self.by_recipient.get(address, {})}
                replies = [self._answer(x[:4].upper(), answers) for x in lines]
                ending = next((i for i, r in enumerate(replies) if r.startswith(b"421")), None)
                if ending is not None:  # the server closes: nothing after the 421
                    writer.write(b"".join(replies[: ending + 1]))
                    break
                if SILENT in replies:
                    writer.write(b"".join(replies[: replies.index(SILENT)]))
                    await asyncio.sleep(3600)
                writer.write(b"".join(replies))
                if replies[-1].startswith(b"354"):
                    self.messages.append(await self._message(reader))
                    end = answers[b"."]
                    if end == SILENT:
                        await asyncio.sleep(3600)
                    writer.write(end)
                if commands[-1] in (b"QUIT",):
                    break
                if commands[-1] in (b"RSET", b"DATA"):
                    answers = DEFAULT
            await writer.drain()
        finally:
            writer.close()

    def _answer(self, verb: bytes, answers: dict[bytes, bytes]) -> bytes:
        if verb == b"EHLO":
            return b"250-scripted\r\n" + (b"250-PIPELINING\r\n" if self.pipelining else b"") + b"250 HELP\r\n"
        if verb == b"QUIT":
            return b"221 bye\r\n"
        return answers.get(verb, b"500 5.5.1 what\r\n")

    @staticmethod
    async def _message(reader: asyncio.StreamReader) -> bytes:
        lines = []
        while (line := await reader.readline()) not in (b".\r\n", b""):
            lines.append(line)
        return b"".join(lines)


@pytest.fixture
async def scripted() -> AsyncIterator[tuple[_Scripted, SmtpPool]]:
    server = _Scripted()
    listening = await asyncio.start_server(server.serve, "127.0.0.1", 0)
    pool = SmtpPool(SmtpConfig("127.0.0.1", listening.sockets[0].getsockname()[1], pool_size=1, timeout=0.3))
    yield server, pool
    await pool.close()
    listening.close()


MESSAGE = b"Subject: x\r\n\r\nhi\r\n"


async def test_a_multi_line_answer_and_a_421_while_idle(scripted: tuple[_Scripted, SmtpPool]) -> None:
    server, pool = scripted
    first = await pool.send("a@example.com", "one@example.com", MESSAGE)
    # The server closes the idle connection with a 421: an answer to nothing, never taken for the
    # next command's; the next message goes out on a new connection.
    server.writers[-1].write(b"421 4.3.2 shutting down\r\n")
    await asyncio.sleep(0.05)
    second = await pool.send("a@example.com", "two@example.com", MESSAGE)
    assert (first.verdict, first.detail) == (SmtpVerdict.ACCEPTED, "2.0.0 ok\n2.0.0 queued as Q9")
    assert second.verdict == SmtpVerdict.ACCEPTED and len(server.commands) == 2


async def test_refusals_reset_the_envelope_and_keep_the_connection(
    scripted: tuple[_Scripted, SmtpPool],
) -> None:
    server, pool = scripted
    server.by_recipient["gone@example.com"] = {b"RCPT": b"550-5.1.1 no such user\r\n550 5.1.1 really\r\n"}
    server.by_recipient["later@example.com"] = {b".": b"452 4.3.1 out of storage\r\n"}
    results = [await pool.send("a@example.com", f"{r}@example.com", MESSAGE) for r in ("gone", "later", "ok")]
    assert [(r.verdict, r.detail) for r in results] == [
        (SmtpVerdict.REFUSED, "550 5.1.1 no such user\n5.1.1 really"),
        (SmtpVerdict.TEMPORARY, "452 4.3.1 out of storage"),
        (SmtpVerdict.ACCEPTED, "2.0.0 ok\n2.0.0 queued as Q9"),
    ]
    assert server.commands == [
        [b"EHLO", b"MAIL", b"RCPT", b"RSET", b"MAIL", b"RCPT", b"DATA", b"RSET", b"MAIL", b"RCPT", b"DATA"]
    ]


async def test_a_421_answer_ends_the_connection(scripted: tuple[_Scripted, SmtpPool]) -> None:
    server, pool = scripted
    server.by_recipient["busy@example.com"] = {b"RCPT": b"421 4.7.0 too busy, closing\r\n"}
    busy = await pool.send("a@example.com", "busy@example.com", MESSAGE)
    after = await pool.send("a@example.com", "ok@example.com", MESSAGE)
    assert (busy.verdict, after.verdict) == (SmtpVerdict.TEMPORARY, SmtpVerdict.ACCEPTED)
    assert len(server.commands) == 2 and b"RSET" not in server.commands[0]


@pytest.mark.parametrize(
    ("silent_at", "verdict"),
    [(b"RCPT", SmtpVerdict.NOT_SENT), (b".", SmtpVerdict.AMBIGUOUS)],
)
async def test_an_answer_that_never_comes_ends_the_connection_within_the_timeout(
    scripted: tuple[_Scripted, SmtpPool], silent_at: bytes, verdict: SmtpVerdict
) -> None:
    """Silent before the data: nothing was sent; silent after it: the server may have the message.
    Either way the connection is closed, and the next message goes out on a new one."""
    server, pool = scripted
    server.by_recipient["one@example.com"] = {silent_at: SILENT}
    started = asyncio.get_running_loop().time()
    result = await pool.send("a@example.com", "one@example.com", MESSAGE)
    waited = asyncio.get_running_loop().time() - started
    assert result.verdict == verdict and "no reply within 0.3 s" in result.detail
    assert 0.25 < waited < 2
    assert (await pool.send("a@example.com", "two@example.com", MESSAGE)).verdict == SmtpVerdict.ACCEPTED


async def test_a_line_that_is_no_reply_ends_the_connection(scripted: tuple[_Scripted, SmtpPool]) -> None:
    server, pool = scripted
    server.by_recipient["one@example.com"] = {b"RCPT": b"HTTP/1.1 400 Bad Request\r\n"}
    result = await pool.send("a@example.com", "one@example.com", MESSAGE)
    assert result.verdict == SmtpVerdict.NOT_SENT and "not an SMTP reply" in result.detail


@pytest.fixture
async def pipelined() -> AsyncIterator[tuple[_Scripted, SmtpPool]]:
    server = _Scripted(pipelining=True)
    listening = await asyncio.start_server(server.serve, "127.0.0.1", 0)
    pool = SmtpPool(SmtpConfig("127.0.0.1", listening.sockets[0].getsockname()[1], pool_size=1, timeout=0.5))
    yield server, pool
    await pool.close()
    listening.close()


async def test_a_pipelining_server_gets_each_envelope_in_one_write(
    pipelined: tuple[_Scripted, SmtpPool],
) -> None:
    """The server answers MAIL only once RCPT and DATA are in too: waiting for each reply would
    time out."""
    server, pool = pipelined
    results = [await pool.send("a@example.com", f"m{i}@example.com", MESSAGE) for i in range(2)]
    assert [r.verdict for r in results] == [SmtpVerdict.ACCEPTED] * 2
    assert server.commands == [[b"EHLO", b"MAIL", b"RCPT", b"DATA", b"MAIL", b"RCPT", b"DATA"]]
    assert server.messages == [MESSAGE] * 2


async def test_pipelined_refusals_send_no_message(pipelined: tuple[_Scripted, SmtpPool]) -> None:
    server, pool = pipelined
    server.by_recipient["gone@example.com"] = {
        b"RCPT": b"550 5.1.1 no such user\r\n",
        b"DATA": b"554 no rcpt\r\n",
    }
    # A server that still says 354 after refusing the only recipient gets an empty message.
    server.by_recipient["odd@example.com"] = {b"RCPT": b"550 5.1.1 no such user\r\n"}
    server.by_recipient["busy@example.com"] = {b"MAIL": b"421 4.7.0 too busy, closing\r\n"}
    results = [
        await pool.send("a@example.com", f"{r}@example.com", MESSAGE)
        for r in ("gone", "odd", "ok", "busy", "ok")
    ]
    assert [(r.verdict, r.detail) for r in results] == [
        (SmtpVerdict.REFUSED, "550 5.1.1 no such user"),
        (SmtpVerdict.REFUSED, "550 5.1.1 no such user"),
        (SmtpVerdict.ACCEPTED, "2.0.0 ok\n2.0.0 queued as Q9"),
        (SmtpVerdict.TEMPORARY, "421 4.7.0 too busy, closing"),
        (SmtpVerdict.ACCEPTED, "2.0.0 ok\n2.0.0 queued as Q9"),
    ]
    envelope = [b"MAIL", b"RCPT", b"DATA"]
    assert server.commands == [
        [b"EHLO", *envelope, b"RSET", *envelope, b"RSET", *envelope, *envelope],
        [b"EHLO", *envelope],
    ]
    assert server.messages == [b"", MESSAGE, MESSAGE]

"""The mail transactions of one SMTP connection, on the connection aiosmtplib opened.

aiosmtplib opens the connection and does everything that decides whom we talk to and how: the
greeting, EHLO, STARTTLS with certificate checks, AUTH (providers.smtp). Then this module takes
over the connection's transport for the commands a campaign repeats per message (MAIL, RCPT,
DATA, and RSET and QUIT), because aiosmtplib's per-command machinery cost more CPU than the
exchange itself: measured on this box with 16 connections into the same sink process, 0.24 ms of
client CPU per message through `SMTP.mail/rcpt/data` against 0.12-0.13 ms for the same four
exchanges written straight to the transport (the address parser, a regular expression over the
whole message for its line endings, and an `asyncio.wait_for` per reply). What it keeps from
aiosmtplib: addresses that are not plain are quoted and checked by `aiosmtplib.email.quote_address`
(nothing can smuggle parameters or commands into MAIL or RCPT), the message is sent with CRLF line
endings and dot-stuffed, and every reply is waited for with the connection's timeout.

SMTP without PIPELINING is strictly one reply per command, so a reply that arrives while no
command waits (a server closing with 421, or a confused one) ends the connection: it can never be
taken for the answer to the next command.
"""

import asyncio
import re

from aiosmtplib.email import quote_address

# A whole reply (multi-line included) longer than this ends the connection: a server streaming
# an endless reply must not grow the worker's memory (aiosmtplib's own bound).
MAX_REPLY = 32 * 1024
# An address sent as it is: an unquoted ASCII local part (RFC 5322 atext and dots), one @, a host
# name. Anything else (a display name, a quoted local part, non-ASCII) goes through aiosmtplib's
# parser and checks.
_PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9.-]+")


class SmtpReply(Exception):
    """A reply other than the one the command expects (a 4xx deferral, a 5xx refusal)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code} {message}")
        self.code = code
        self.message = message


class SmtpConnectionLost(ConnectionError):
    """The connection closed or broke, or a reply did not come in time."""


def envelope_address(address: str) -> bytes:
    """`<address>` for MAIL FROM / RCPT TO; ValueError for one that cannot be sent safely."""
    quoted = f"<{address}>" if _PLAIN_ADDRESS.fullmatch(address) else quote_address(address)
    return quoted.encode("ascii")  # UnicodeEncodeError is a ValueError: no SMTPUTF8 here


def dot_stuffed(message: bytes) -> bytes:
    """The message as DATA carries it: CRLF line endings, a leading dot doubled, the end marker.
    A message written with CRLF already (every campaign email) costs three C-speed scans."""
    crlf = message.count(b"\r\n")
    if message.count(b"\n") != crlf or message.count(b"\r") != crlf:
        message = message.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
    if not message.endswith(b"\r\n"):
        message += b"\r\n"
    if message.startswith(b"."):
        message = b"." + message
    return message.replace(b"\r\n.", b"\r\n..") + b".\r\n"


class SmtpSession(asyncio.Protocol):
    """One connection's mail transactions: one command in flight, its reply parsed here."""

    def __init__(self, transport: asyncio.Transport, timeout: float) -> None:
        self._transport = transport
        self._timeout = timeout
        self._buffer = bytearray()
        self._waiter: asyncio.Future[tuple[int, str]] | None = None
        self._lost = False
        transport.set_protocol(self)

    @property
    def open(self) -> bool:
        return not self._lost and not self._transport.is_closing()

    async def mail(self, sender: str) -> None:
        await self._expect(b"MAIL FROM:" + envelope_address(sender) + b"\r\n", (250,))

    async def rcpt(self, recipient: str) -> None:
        await self._expect(b"RCPT TO:" + envelope_address(recipient) + b"\r\n", (250, 251))

    async def data(self, message: bytes) -> str:
        """Send the message; the server's acceptance text (it often names its queue id)."""
        await self._expect(b"DATA\r\n", (354,))
        return await self._expect(dot_stuffed(message), (250,))

    async def rset(self) -> None:
        await self._expect(b"RSET\r\n", (250,))

    async def quit(self) -> None:
        """Say goodbye if the connection still works; close it in any case."""
        try:
            if self.open:
                await self._expect(b"QUIT\r\n", (221,))
        except (SmtpReply, SmtpConnectionLost):
            pass
        finally:
            self.close()

    def close(self) -> None:
        self._lost = True
        self._transport.close()

    async def _expect(self, command: bytes, codes: tuple[int, ...]) -> str:
        if not self.open:
            raise SmtpConnectionLost("the connection is closed")
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[tuple[int, str]] = loop.create_future()
        self._waiter = waiter
        self._transport.write(command)
        timer = loop.call_later(self._timeout, self._expire, waiter)
        try:
            code, message = await waiter
        finally:
            timer.cancel()
            self._waiter = None
        if code not in codes:
            raise SmtpReply(code, message)
        return message

    def _expire(self, waiter: "asyncio.Future[tuple[int, str]]") -> None:
        if not waiter.done():
            waiter.set_exception(SmtpConnectionLost(f"no reply within {self._timeout:g} s"))
        self.close()  # what the server does with the command now is unknown

    # asyncio.Protocol

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) > MAX_REPLY:
            self._fail(SmtpConnectionLost("the server's reply is too long"))
            return
        reply = self._complete_reply()
        if reply is None:
            return
        if self._waiter is None or self._waiter.done():
            self._fail(SmtpConnectionLost(f"unexpected reply: {reply[0]} {reply[1]}"))
            return
        self._waiter.set_result(reply)

    def eof_received(self) -> bool:
        self._fail(SmtpConnectionLost("the server closed the connection"))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(SmtpConnectionLost(f"connection lost: {exc}" if exc else "connection closed"))

    def _fail(self, error: SmtpConnectionLost) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)
        self.close()

    def _complete_reply(self) -> tuple[int, str] | None:
        """The reply in the buffer once its last line (`ddd ` or `ddd`) is in, consumed from it;
        a line that is no reply line is a broken server: the connection ends."""
        lines: list[str] = []
        start = 0
        while True:
            end = self._buffer.find(b"\n", start)
            if end < 0:
                return None
            line = bytes(self._buffer[start:end]).rstrip(b"\r")
            start = end + 1
            code = line[:3]
            more = line[3:4] == b"-"
            if len(code) != 3 or not code.isdigit() or line[3:4] not in (b"", b" ", b"-"):
                self._fail(SmtpConnectionLost(f"not an SMTP reply: {line[:80]!r}"))
                return None
            lines.append(line[4:].decode("utf-8", "replace"))
            if not more:
                del self._buffer[:start]
                return int(code), "\n".join(lines)

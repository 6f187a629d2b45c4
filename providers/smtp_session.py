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
endings and dot-stuffed, and every reply is waited for with the connection's timeout. aiosmtplib
does not pipeline; this does when the server announces PIPELINING (`SmtpSession`).

Every command written is owed exactly one reply, taken in order. A reply beyond those (a server
closing with 421 while idle, or a confused one) ends the connection: it can never be taken for
the answer to the next command. So does a wait for a reply that ends in any way but the reply.
"""

import asyncio
import re
from collections import deque

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


# The replies each envelope command expects.
_MAIL_OK = (250,)
_RCPT_OK = (250, 251)
_DATA_OK = (354,)


class SmtpSession(asyncio.Protocol):
    """One connection's mail transactions. A transaction is its envelope (MAIL, RCPT, DATA up to
    the server's 354) and then its content: until the content is written nothing of the message
    has left, so a connection lost in the envelope means NOT sent, and only one lost after it
    means maybe sent (providers.smtp).

    With `pipelining` (the server announced PIPELINING, RFC 2920, as the large relays do) the
    envelope's three commands go in one write and their replies are read in order: two round trips
    per message instead of four, which on a real provider's link is half the time a connection
    spends on a message."""

    def __init__(self, transport: asyncio.Transport, timeout: float, *, pipelining: bool = False) -> None:
        self._transport = transport
        self._timeout = timeout
        self._pipelining = pipelining
        self._buffer = bytearray()
        self._replies: deque[tuple[int, str]] = deque()  # read, not yet taken
        self._owed = 0  # replies owed to commands written and not yet taken
        self._waiter: asyncio.Future[None] | None = None
        self._lost: SmtpConnectionLost | None = None
        transport.set_protocol(self)

    @property
    def open(self) -> bool:
        return self._lost is None and not self._transport.is_closing()

    async def envelope(self, sender: str, recipient: str) -> None:
        """MAIL, RCPT and DATA, until the server waits for the message. SmtpReply for a refusal
        (the caller resets the envelope), SmtpConnectionLost when the connection broke first."""
        mail = b"MAIL FROM:" + envelope_address(sender) + b"\r\n"
        rcpt = b"RCPT TO:" + envelope_address(recipient) + b"\r\n"
        if not self._pipelining:
            await self._command(mail, _MAIL_OK)
            await self._command(rcpt, _RCPT_OK)
            await self._command(b"DATA\r\n", _DATA_OK)
            return
        self._write(mail + rcpt + b"DATA\r\n", replies=3)
        replies: list[tuple[int, str]] = []
        try:
            for _ in range(3):
                replies.append(await self._reply())
        except SmtpConnectionLost:
            # A refusal that came before the loss says more (a 421 is the server closing).
            _raise_refusal(replies)
            raise
        if replies[2][0] in _DATA_OK and _refusal(replies) is not None:
            # The server waits for a message whose envelope it refused: end it, empty.
            await self._command(b".\r\n", ())
        _raise_refusal(replies)

    async def content(self, message: bytes) -> str:
        """The message, after `envelope`; the server's acceptance text (often its queue id)."""
        return await self._command(dot_stuffed(message), (250,))

    async def rset(self) -> None:
        await self._command(b"RSET\r\n", (250,))

    async def quit(self) -> None:
        """Say goodbye if the connection still works; close it in any case."""
        try:
            if self.open:
                await self._command(b"QUIT\r\n", (221,))
        except (SmtpReply, SmtpConnectionLost):
            pass
        finally:
            self.close()

    def close(self) -> None:
        self._fail(SmtpConnectionLost("the connection is closed"))

    async def _command(self, command: bytes, codes: tuple[int, ...]) -> str:
        """Write one command and read its reply; any reply will do when `codes` is empty."""
        self._write(command, replies=1)
        code, message = await self._reply()
        if codes and code not in codes:
            raise SmtpReply(code, message)
        return message

    def _write(self, data: bytes, *, replies: int) -> None:
        if not self.open:
            raise self._lost or SmtpConnectionLost("the connection is closed")
        self._owed += replies
        self._transport.write(data)

    async def _reply(self) -> tuple[int, str]:
        if not self._replies:
            if self._lost is not None:
                raise self._lost
            loop = asyncio.get_running_loop()
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiter = waiter
            timer = loop.call_later(self._timeout, self._expire)
            try:
                await waiter
            except BaseException:
                # Lost, timed out or cancelled: a reply still owed could later be taken for
                # another command's, so this connection carries nothing more.
                self.close()
                raise
            finally:
                timer.cancel()
                self._waiter = None
        self._owed -= 1
        return self._replies.popleft()

    def _expire(self) -> None:
        # What the server does with the command now is unknown: the connection ends.
        self._fail(SmtpConnectionLost(f"no reply within {self._timeout:g} s"))

    def _fail(self, error: SmtpConnectionLost) -> None:
        if self._lost is None:
            self._lost = error
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)
        self._transport.close()

    # asyncio.Protocol

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) > MAX_REPLY:
            self._fail(SmtpConnectionLost("the server's reply is too long"))
            return
        while (reply := self._complete_reply()) is not None:
            if len(self._replies) >= self._owed:
                self._fail(SmtpConnectionLost(f"unexpected reply: {reply[0]} {reply[1]}"))
                return
            self._replies.append(reply)
        if self._replies and self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def eof_received(self) -> bool:
        self._fail(SmtpConnectionLost("the server closed the connection"))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(SmtpConnectionLost(f"connection lost: {exc}" if exc else "connection closed"))

    def _complete_reply(self) -> tuple[int, str] | None:
        """The first reply in the buffer once its last line (`ddd ` or `ddd`) is in, consumed
        from it; a line that is no reply line is a broken server: the connection ends."""
        lines: list[str] = []
        start = 0
        while self._lost is None:
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
        return None


def _refusal(replies: list[tuple[int, str]]) -> tuple[int, str] | None:
    """The first reply of a pipelined envelope that is not the one its command expects."""
    for (code, message), ok in zip(replies, (_MAIL_OK, _RCPT_OK, _DATA_OK), strict=False):
        if code not in ok:
            return code, message
    return None


def _raise_refusal(replies: list[tuple[int, str]]) -> None:
    refused = _refusal(replies)
    if refused is not None:
        raise SmtpReply(*refused)

"""Request body limit (README "API at a glance": 413 over 1 MiB), enforced while streaming, before parsing.

A declared Content-Length over the limit is refused before anything is read. A body without one
(chunked) is counted as it arrives: the moment it passes the limit, reading it raises `BodyTooLarge`
inside the route, so nothing acts on the part that did arrive (which may itself parse as a whole
request), and the answer is a 413 whatever the route made of the error.
"""

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import problem_response

# Bulk import is the one endpoint that legitimately takes large bodies (100,000 rows a call).
LARGE_BODY_PATHS = ("/customers/import",)
LARGE_BODY_LIMIT = 64 * 1024 * 1024


class BodyTooLarge(HTTPException):
    """Raised from `receive` into whatever reads the body: FastAPI re-raises HTTPExceptions met while
    parsing a body, and routes that read the body themselves do not catch it."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body is over {limit} bytes")


class BodySizeLimit:
    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = LARGE_BODY_LIMIT if scope["path"] in LARGE_BODY_PATHS else self.limit
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                await problem_response(413, f"request body is over {limit} bytes")(scope, receive, send)
                return
        received = 0
        too_large = False

        async def limited_receive() -> Message:
            nonlocal received, too_large
            if too_large:
                raise BodyTooLarge(limit)
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    too_large = True
                    raise BodyTooLarge(limit)
            return message

        response_started = False

        async def guarded_send(message: Message) -> None:
            # Whatever the app answers once the body was too large (its handler's 413, or a 400/500
            # from a route that turned the error into something else), the client gets the 413.
            nonlocal response_started
            if too_large and not response_started:
                response_started = True
                await problem_response(413, f"request body is over {limit} bytes")(scope, receive, send)
                return
            if too_large:
                return
            response_started = True
            await send(message)

        await self.app(scope, limited_receive, guarded_send)

"""Request body limit (contract §4: 413 over 1 MiB), enforced while streaming, before parsing."""

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import problem_response

# Bulk import is the one endpoint that legitimately takes large bodies (100,000 rows a call).
LARGE_BODY_PATHS = ("/customers/import",)
LARGE_BODY_LIMIT = 64 * 1024 * 1024


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
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    too_large = True
                    return {"type": "http.request", "body": b"", "more_body": False}
            return message

        response_started = False

        async def guarded_send(message: Message) -> None:
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

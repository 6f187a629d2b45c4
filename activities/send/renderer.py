"""The renderer: a chunk of messages rendered in the render pool, one job per channel.

The round trip to a render process is paid once per chunk, not per message. A template that
fails, hangs or eats memory costs its campaign those messages (FAILED with reason TEMPLATE_ERROR,
or TOO_LONG for an SMS over its segment limit), and nobody else any time (README "Templates").
"""

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from activities.send.model import Content, Message, Outgoing
from core.enums import Channel
from core.ids import new_id
from providers.email_content import EmailParts
from providers.render_pool import EmailSource, RenderPool, RenderProblem
from providers.rendering import recipient_context


@dataclass
class Rendered:
    ready: list[Outgoing] = field(default_factory=list)
    failed: list[tuple[Message, RenderProblem]] = field(default_factory=list)


class Renderer:
    def __init__(self, pool: RenderPool, tenant_id: str, content: Content) -> None:
        self._pool = pool
        self._tenant = tenant_id
        self._content = content

    async def render(self, messages: Sequence[Message]) -> Rendered:
        emails = [m for m in messages if m.channel == Channel.EMAIL]
        texts = [m for m in messages if m.channel != Channel.EMAIL]
        # Both channels render at once, each in its own job (the pool has several processes).
        email_results, text_results = await asyncio.gather(self._emails(emails), self._texts(texts))
        results: list[EmailParts | str | RenderProblem] = [*email_results, *text_results]
        out = Rendered()
        for message, result in zip([*emails, *texts], results, strict=True):
            if isinstance(result, RenderProblem):
                out.failed.append((message, result))
                continue
            # A message sent under an existing row keeps its id (the idempotency key).
            delivery_id = message.delivery_id or new_id("delivery")
            if isinstance(result, EmailParts):
                out.ready.append(Outgoing(message, delivery_id, parts=result))
            else:
                out.ready.append(Outgoing(message, delivery_id, body=result))
        return out

    async def _emails(self, messages: list[Message]) -> list[EmailParts | RenderProblem]:
        return await self._by_variant(messages, Channel.EMAIL, self._emails_of)

    async def _texts(self, messages: list[Message]) -> list[str | RenderProblem]:
        return await self._by_variant(messages, Channel.SMS, self._texts_of)

    async def _by_variant(self, messages: list[Message], channel: Channel, render: Any) -> list[Any]:
        """One render job per A/B variant (one in all without a test), results in message order."""
        groups: dict[str | None, list[int]] = {}
        for index, message in enumerate(messages):
            groups.setdefault(message.variant, []).append(index)
        results: list[Any] = [None] * len(messages)
        for variant, indexes in groups.items():
            template = self._content.template(channel, variant)
            rendered = await render(template, [messages[i] for i in indexes])
            for i, result in zip(indexes, rendered, strict=True):
                results[i] = result
        return results

    async def _emails_of(
        self, template: Mapping[str, Any] | None, messages: list[Message]
    ) -> list[EmailParts | RenderProblem]:
        if not messages:
            return []
        if template is None:
            return [RenderProblem("the campaign has no EMAIL template") for _ in messages]
        source = EmailSource(template["subject"], template["html"], template["text"])
        contexts = [recipient_context(dict(m.customer)) for m in messages]
        return await self._pool.render_email(self._tenant, source, contexts)

    async def _texts_of(
        self, template: Mapping[str, Any] | None, messages: list[Message]
    ) -> list[str | RenderProblem]:
        if not messages:
            return []
        if template is None:
            return [RenderProblem("the campaign has no SMS template") for _ in messages]
        contexts = [recipient_context(dict(m.customer)) for m in messages]
        return await self._pool.render_sms(self._tenant, template["body"], contexts)

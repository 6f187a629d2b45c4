"""What the activities need at run time, built once per worker process."""

from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine

from activities.send.throttle import Throttle
from core.settings import Settings
from providers.accounts import AccountPools
from providers.render_pool import RenderPool
from providers.sms import SmsClient
from providers.smtp import SmtpConfig, SmtpPool


@dataclass
class ActivityDeps:
    settings: Settings
    engine: AsyncEngine
    smtp: SmtpPool
    sms: SmsClient
    # Tenant templates render in these processes, a whole wave per job, never on the event loop.
    render_pool: RenderPool
    # The provider accounts' rate limits as this worker draws on them (shared through Postgres).
    throttle: Throttle
    # Tenants' own provider accounts: a pool per account, made on first use (providers.accounts).
    accounts: AccountPools = field(default_factory=AccountPools)

    @classmethod
    def build(cls, settings: Settings, engine: AsyncEngine) -> "ActivityDeps":
        smtp = SmtpPool(SmtpConfig.platform(settings))
        sms = SmsClient(
            settings.sms_url, settings.sms_token, settings.sms_from, max_in_flight=settings.sms_in_flight
        )
        render_pool = RenderPool.from_settings(settings)
        return cls(
            settings=settings,
            engine=engine,
            smtp=smtp,
            sms=sms,
            render_pool=render_pool,
            throttle=Throttle(engine, settings.rate_limits),
        )

    async def close(self) -> None:
        await self.render_pool.close()
        await self.smtp.close()
        await self.sms.close()
        await self.accounts.close()

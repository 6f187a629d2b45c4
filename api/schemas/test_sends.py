"""Test sends (api.test_sends)."""

from typing import Annotated

from pydantic import Field, model_validator

from api.schemas.common import ApiIn, ApiOut, SafeStr
from core.addresses import AddressLists

Address = Annotated[SafeStr, Field(min_length=3, max_length=320)]


class TestSendBody(ApiIn, AddressLists):
    """Where the test goes (addresses need not be customers) and who it renders as."""

    __test__ = False  # not a pytest class
    emails: Annotated[list[Address], Field(max_length=10)] = Field(default_factory=list)
    phones: Annotated[list[Address], Field(max_length=10)] = Field(default_factory=list)
    customer_id: Annotated[SafeStr, Field(max_length=40)] | None = None

    @model_validator(mode="after")
    def _some(self) -> "TestSendBody":
        if not self.emails and not self.phones:
            raise ValueError("give at least one address in `emails` or `phones`")
        return self


class TestSendOutcome(ApiOut):
    __test__ = False
    channel: str
    address: str
    sent: bool
    detail: str | None = None


class TestSendResult(ApiOut):
    __test__ = False
    campaign_id: str
    results: list[TestSendOutcome]

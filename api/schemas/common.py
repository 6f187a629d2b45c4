"""Base models of the API edge: camelCase JSON, unknown fields rejected, UTC `Z` times."""

from datetime import UTC, datetime
from typing import Annotated, Generic, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, PlainSerializer
from pydantic.alias_generators import to_camel


def utc_z(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


UtcDatetime = Annotated[datetime, PlainSerializer(utc_z, return_type=str, when_used="json")]


# Postgres refuses the NUL character in text (and in jsonb): a string holding one must be a 422
# here, not a 500 there. Every free-text field of a request body is a SafeStr.
def no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain the NUL character (\\u0000)")
    return value


NoNul = AfterValidator(no_nul)
SafeStr = Annotated[str, NoNul]


class ApiIn(BaseModel):
    """Request bodies: camelCase, and a typo is a 422 instead of silently doing nothing."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class ApiOut(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class PageMeta(ApiOut):
    total: int
    skip: int
    take: int


T = TypeVar("T")


class Page(ApiOut, Generic[T]):
    data: list[T]
    meta: PageMeta

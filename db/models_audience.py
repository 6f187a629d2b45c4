"""Tables of the audience and the content: customers, segments and their members, templates and
their versions, suppressions."""

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from db.model_base import TS, Base, NamedRecord, _now, index_where


class Customer(Base):
    __tablename__ = "customers"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(100))
    external_id: Mapped[str] = mapped_column(String(200))
    club_id: Mapped[str | None] = mapped_column(String(100))
    email: Mapped[str | None] = mapped_column(String(320))
    phone: Mapped[str | None] = mapped_column(String(20))
    first_name: Mapped[str | None] = mapped_column(String(200))
    last_name: Mapped[str | None] = mapped_column(String(200))
    attributes: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    email_opt_in: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    sms_opt_in: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    # Suppressions: set by unsubscribe links and hard bounces; they outrank opt-ins.
    email_unsubscribed_at: Mapped[datetime | None] = mapped_column(TS)
    sms_unsubscribed_at: Mapped[datetime | None] = mapped_column(TS)
    email_bounced_at: Mapped[datetime | None] = mapped_column(TS)
    # The person's IANA zone, for quiet hours (NULL: the campaign's zone).
    timezone: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(TS, server_default=_now())
    updated_at: Mapped[datetime] = mapped_column(TS, server_default=_now())
    __table_args__ = (
        UniqueConstraint("tenant_id", "external_id", name="uq_customers_tenant_external"),
        Index("ix_customers_tenant_club", "tenant_id", "club_id"),
        Index("ix_customers_tenant_email", "tenant_id", "email"),
        # Another record of the tenant with the same address, unsubscribed or bounced (0005).
        index_where(
            "ix_customers_email_unsubscribed", text("email_unsubscribed_at IS NOT NULL"), "tenant_id", "email"
        ),
        index_where("ix_customers_email_bounced", text("email_bounced_at IS NOT NULL"), "tenant_id", "email"),
        index_where(
            "ix_customers_sms_unsubscribed", text("sms_unsubscribed_at IS NOT NULL"), "tenant_id", "phone"
        ),
    )


class Segment(NamedRecord, Base):
    __tablename__ = "segments"
    filter: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(TS, server_default=_now())
    updated_at: Mapped[datetime] = mapped_column(TS, server_default=_now())
    __table_args__ = (Index("ix_segments_tenant_created", "tenant_id", "created_at"),)


class SegmentMember(Base):
    """Members of a STATIC segment; the primary key doubles as the keyset for snapshots."""

    __tablename__ = "segment_members"
    segment_id: Mapped[str] = mapped_column(ForeignKey("segments.id", ondelete="CASCADE"), primary_key=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True)
    __table_args__ = (Index("ix_segment_members_customer", "customer_id"),)


class Template(Base):
    __tablename__ = "templates"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(100))
    club_id: Mapped[str | None] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(200))
    channel: Mapped[str] = mapped_column(String(8))
    subject: Mapped[str | None] = mapped_column(Text)
    html: Mapped[str | None] = mapped_column(Text)
    text: Mapped[str | None] = mapped_column(Text)
    body: Mapped[str | None] = mapped_column(Text)
    # The current version; every version's content is kept in template_versions.
    version: Mapped[int] = mapped_column(Integer, server_default="1")  # not text(): `text` is a column here
    created_at: Mapped[datetime] = mapped_column(TS, server_default=_now())
    updated_at: Mapped[datetime] = mapped_column(TS, server_default=_now())
    __table_args__ = (Index("ix_templates_tenant_created", "tenant_id", "created_at"),)


class TemplateVersion(Base):
    """The content of each version of a template; a send run pins the versions it sends."""

    __tablename__ = "template_versions"
    template_id: Mapped[str] = mapped_column(ForeignKey("templates.id", ondelete="CASCADE"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    subject: Mapped[str | None] = mapped_column(Text)
    html: Mapped[str | None] = mapped_column(Text)
    text: Mapped[str | None] = mapped_column(Text)
    body: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(TS, server_default=_now())


class Suppression(Base):
    """The tenant suppression list: addresses that never receive a message on that channel.

    Email addresses are stored lower-cased and matched case-insensitively; phones in E.164.
    """

    __tablename__ = "suppressions"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(100))
    channel: Mapped[str] = mapped_column(String(8))
    address: Mapped[str] = mapped_column(String(320))
    note: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(TS, server_default=_now())
    __table_args__ = (
        UniqueConstraint("tenant_id", "channel", "address", name="uq_suppressions_tenant_channel_address"),
        Index("ix_suppressions_tenant_created", "tenant_id", "created_at"),
    )

"""Connecting to Temporal the same way everywhere (API, worker, CLI, tests)."""

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import Runtime

from core import tracing
from core.settings import Settings


async def connect(settings: Settings, *, runtime: Runtime | None = None) -> Client:
    """`runtime`: the worker's, when it exports the SDK's metrics; tracing adds its interceptor."""
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=pydantic_data_converter,
        interceptors=tracing.client_interceptors(),
        runtime=runtime,
    )

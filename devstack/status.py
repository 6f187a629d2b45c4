"""`campaigns status <campaignId>`: live progress of one campaign, from its workflow's `progress` query.

It asks Temporal directly (like `temporal workflow query --type progress`), so it shows what the
workflow knows this instant, including a batch in flight, and works for operators without an API
token. A query needs a worker polling the campaign's task queue; without one it times out and says so.
"""

import asyncio
from typing import TextIO

from temporalio.client import Client, WorkflowQueryFailedError
from temporalio.service import RPCError, RPCStatusCode

from core.constants import campaign_workflow_id
from core.messages import CampaignProgress
from core.settings import Settings
from core.temporal import connect

BAR_WIDTH = 30


class StatusError(Exception):
    """The campaign cannot be queried; the message says why."""


def render(progress: CampaignProgress, width: int = BAR_WIDTH) -> str:
    """One line: status, a bar of recipients processed out of the target, the message counts."""
    target, done = progress.target_count, progress.processed
    if target:
        fraction = min(done / target, 1.0)
        filled = round(fraction * width)
        bar = "#" * filled + "-" * (width - filled)
        share = f"{fraction * 100:5.1f}% {done}/{target}"
    elif progress.status.is_final:
        bar, share = "#" * width, f"100.0% {done}/{target or 0}"
    else:
        bar, share = "." * width, "   -   " + ("snapshotting" if progress.batch_running else "not started")
    c = progress.counts
    line = (
        f"{progress.campaign_id} {progress.status.value:<9} [{bar}] {share}  messages: sent {c.sent}, "
        f"skipped {c.skipped}, failed {c.failed}, bounced {c.bounced}, unknown {c.unknown}"
    )
    if progress.last_error:
        line += f"  last error: {progress.last_error}"
    return line


async def query(client: Client, campaign_id: str, timeout: float) -> CampaignProgress:
    handle = client.get_workflow_handle(campaign_workflow_id(campaign_id))
    try:
        return await asyncio.wait_for(handle.query("progress", result_type=CampaignProgress), timeout)
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise StatusError(f"no workflow {campaign_workflow_id(campaign_id)}") from err
        raise StatusError(f"Temporal refused the query: {err.message}") from err
    except WorkflowQueryFailedError as err:
        raise StatusError(f"the progress query failed: {err}") from err
    except TimeoutError as err:
        raise StatusError(f"no answer in {timeout:g}s: is a worker polling its task queue?") from err


async def watch(
    settings: Settings,
    campaign_id: str,
    out: TextIO,
    *,
    once: bool = False,
    interval: float = 1.0,
    query_timeout: float = 10.0,
) -> CampaignProgress:
    """Print progress until the campaign is COMPLETED or CANCELLED (or once); return the last.

    On a terminal the line is redrawn in place; otherwise a line is printed whenever it changes.
    """
    client = await connect(settings)
    tty = out.isatty()
    last = ""
    while True:
        progress = await query(client, campaign_id, query_timeout)
        line = render(progress)
        if tty:
            out.write("\r\x1b[2K" + line)
        elif line != last:
            out.write(line + "\n")
        out.flush()
        last = line
        if once or progress.status.is_final:
            if tty:
                out.write("\n")
            return progress
        await asyncio.sleep(interval)

"""What `/metrics` shows, in Prometheus' text format: operations by kind and outcome, how long
their steps took, the queue depths the bot last observed, and the Slack API calls that failed.

One registry for the process (not prometheus_client's global one, so nothing else's metrics
leak in). Labels stay few and bounded: a step is its number in the plan, not its name (names
carry queue and worker names); a queue is its prefix and name, both from the configuration.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState

REGISTRY = CollectorRegistry(auto_describe=True)
CONTENT_TYPE = CONTENT_TYPE_LATEST

OPERATIONS = Counter(
    "chatops_operations",
    "Operations finished, by kind, environment and outcome.",
    ["kind", "env", "outcome"],
    registry=REGISTRY,
)
STEP_SECONDS = Histogram(
    "chatops_step_duration_seconds",
    "How long each step of an operation took, by operation kind, step number and outcome.",
    ["kind", "step", "outcome"],
    buckets=(0.05, 0.25, 1, 5, 15, 60, 300, 900, 3600),
    registry=REGISTRY,
)
QUEUE_JOBS = Gauge(
    "chatops_queue_jobs",
    "Jobs per state in each queue, as the bot last read them.",
    ["prefix", "queue", "state"],
    registry=REGISTRY,
)
SLACK_ERRORS = Counter(
    "chatops_slack_api_errors",
    "Slack Web API calls that failed, by method and error.",
    ["method", "error"],
    registry=REGISTRY,
)


def observe_queue(prefix: str, queue: str, counts: dict[str, int]) -> None:
    for state, jobs in counts.items():
        QUEUE_JOBS.labels(prefix, queue, state).set(jobs)


def exposition() -> bytes:
    return generate_latest(REGISTRY)


class SlackErrorCounter(AsyncRetryHandler):
    """Counts each failed HTTP exchange with Slack (429, 5xx, connection errors) and never
    retries itself: placed first among the client's retry handlers, it sees every failure
    before the ones that do retry. `ok: false` answers are counted where they are handled."""

    async def _can_retry_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        method = request.url.rsplit("/", 1)[-1].split("?", 1)[0] or "unknown"
        if response is not None and response.status_code >= 400:
            SLACK_ERRORS.labels(method, f"http_{response.status_code}").inc()
        elif error is not None:
            SLACK_ERRORS.labels(method, type(error).__name__).inc()
        return False

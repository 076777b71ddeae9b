"""``/metrics`` for Prometheus: the centre's live state and the engine's health.

Gauges are read at scrape time from what the engine already holds (the runtime's
live calls and agents, the board's day figures, the AMI link), so scraping costs
one pass over them and nothing is counted twice. Labels are queues and states,
never agents or numbers: cardinality stays small with 2,000 agents, and a metrics
store never holds customer data (STD-078). ``routes.py`` serves it to a supervisor's or
admin's session or the deployment token (Prometheus: README.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from callflow.agents.events import AgentState
from callflow.engine import kpi

if TYPE_CHECKING:
    from callflow.board.live_view import LiveView
    from callflow.feature import FeatureServices


@dataclass
class MetricsSnapshot:
    """Everything one scrape reports, gathered on the loop in one go."""

    waiting: dict[str, int] = field(default_factory=dict)  # queue -> calls not answered yet
    longest_wait_s: dict[str, float] = field(default_factory=dict)
    connected: dict[str, int] = field(default_factory=dict)  # queue -> calls with an agent
    agents_by_state: dict[str, int] = field(default_factory=dict)
    service_level: dict[str, float | None] = field(default_factory=dict)  # today, 0..1
    service_level_target: dict[str, float] = field(default_factory=dict)  # 0..1
    asa_s: dict[str, float | None] = field(default_factory=dict)
    calls_today: dict[tuple[str, str], int] = field(default_factory=dict)  # (queue, class)
    ami_up: bool = False
    ami_last_lag_s: float = 0.0
    ami_max_lag_s: float = 0.0
    ami_reconnects: float = 0.0
    alarms_open: int = 0
    pending_writes: int = 0
    write_failures: int = 0
    ws_subscribers: int = 0
    published: int = 0
    runtime_errors: int = 0


def gather(service: FeatureServices, live: LiveView, alarms_open: int) -> MetricsSnapshot:
    """One scrape's figures, on the loop: the runtime's live calls and agents, the live
    view's queue views, the AMI link, the store writer and the event hub."""
    runtime = service.runtime
    snap = MetricsSnapshot()
    now = service.clock.wall().timestamp()
    for q in live.queue_names():
        snap.waiting[q] = 0
        snap.connected[q] = 0
        snap.longest_wait_s[q] = 0.0
    if runtime is not None:
        for call in runtime.live_calls():
            q = call.queue
            if call.answered_at is None:
                snap.waiting[q] = snap.waiting.get(q, 0) + 1
                snap.longest_wait_s[q] = max(snap.longest_wait_s.get(q, 0.0),
                                             round(now - call.entered_at, 3))
            else:
                snap.connected[q] = snap.connected.get(q, 0) + 1
        for state in AgentState:
            snap.agents_by_state[state.value] = 0
        for agent in runtime.agents.values():
            snap.agents_by_state[agent.state.value] += 1
        snap.runtime_errors = runtime.stats.errors
    rules_for = kpi.rules_by_queue(service.policy)
    for q, view in live.queue_views.items():
        k = view["kpi"]
        snap.service_level[q] = k.get("service_level")
        snap.service_level_target[q] = rules_for(q).service_level_target_pct / 100
        snap.asa_s[q] = k.get("asa_s")
        for name in ("offered", "answered", "abandoned", "short_abandons", "callbacks"):
            snap.calls_today[(q, name)] = int(k.get(name) or 0)
    runtime = service.runtime
    stats = runtime.pbx_stats
    snap.ami_up = runtime.pbx_up
    if stats:
        snap.ami_last_lag_s = float(stats.get("last_lag", 0.0))
        snap.ami_max_lag_s = float(stats.get("max_lag", 0.0))
        snap.ami_reconnects = float(stats.get("reconnects", 0.0))
    snap.alarms_open = alarms_open
    writer = service.writer
    if writer is not None:
        snap.pending_writes = writer.stats.pending
        snap.write_failures = writer.stats.failures
    hub = service.hub.stats()
    snap.ws_subscribers = hub["subscribers"]
    snap.published = hub["published"]
    return snap


def _gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=list(labels))


class _Collector(Collector):
    def __init__(self, gather: Callable[[], MetricsSnapshot]) -> None:
        self._gather = gather

    def collect(self) -> Iterator[Metric]:
        s = self._gather()
        waiting = _gauge("callflow_calls_waiting", "Calls not answered yet (routing or ringing)",
                         ("queue",))
        for queue, n in sorted(s.waiting.items()):
            waiting.add_metric([queue], n)
        yield waiting
        longest = _gauge("callflow_longest_wait_seconds", "Longest current wait", ("queue",))
        for queue, secs in sorted(s.longest_wait_s.items()):
            longest.add_metric([queue], secs)
        yield longest
        connected = _gauge("callflow_calls_connected", "Calls talking to an agent", ("queue",))
        for queue, n in sorted(s.connected.items()):
            connected.add_metric([queue], n)
        yield connected
        agents = _gauge("callflow_agents", "Agents by state", ("state",))
        for state, n in sorted(s.agents_by_state.items()):
            agents.add_metric([state], n)
        yield agents
        sl = _gauge("callflow_service_level_ratio",
                    "Today's service level (answered within the threshold / decided calls)",
                    ("queue",))
        for queue, value in sorted(s.service_level.items()):
            sl.add_metric([queue], math.nan if value is None else value)
        yield sl
        target = _gauge("callflow_service_level_target_ratio", "Service-level target",
                        ("queue",))
        for queue, value in sorted(s.service_level_target.items()):
            target.add_metric([queue], value)
        yield target
        asa = _gauge("callflow_asa_seconds", "Today's average speed of answer", ("queue",))
        for queue, value in sorted(s.asa_s.items()):
            asa.add_metric([queue], math.nan if value is None else value)
        yield asa
        today = _gauge("callflow_calls_today", "Today's calls by queue and KPI class",
                       ("queue", "class"))
        for (queue, kind), n in sorted(s.calls_today.items()):
            today.add_metric([queue, kind], n)
        yield today
        yield GaugeMetricFamily("callflow_ami_link_up", "1 when logged in to AMI and resynced",
                                value=1 if s.ami_up else 0)
        yield GaugeMetricFamily("callflow_ami_event_lag_seconds",
                                "Seconds from AMI receipt to the loop, last batch",
                                value=s.ami_last_lag_s)
        yield GaugeMetricFamily("callflow_ami_event_lag_max_seconds",
                                "Largest AMI event lag since start", value=s.ami_max_lag_s)
        yield CounterMetricFamily("callflow_ami_reconnects", "AMI reconnects since start",
                                  value=s.ami_reconnects)
        yield GaugeMetricFamily("callflow_alarms_open", "Unacknowledged alarms on the board",
                                value=s.alarms_open)
        yield GaugeMetricFamily("callflow_store_pending_writes", "Records waiting for the store",
                                value=s.pending_writes)
        yield CounterMetricFamily("callflow_store_write_failures", "Failed store writes",
                                  value=s.write_failures)
        yield GaugeMetricFamily("callflow_websocket_subscribers", "Open event streams",
                                value=s.ws_subscribers)
        yield CounterMetricFamily("callflow_events_published", "Messages published to clients",
                                  value=s.published)
        yield CounterMetricFamily("callflow_runtime_errors", "Faults the runtime logged",
                                  value=s.runtime_errors)


def render(gather: Callable[[], MetricsSnapshot]) -> bytes:
    """The Prometheus text exposition of one snapshot (a private registry per call)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(gather))
    return generate_latest(registry)

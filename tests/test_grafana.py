"""The Grafana dashboard (docs/grafana/grpcpool.json) queries only metrics the
Prometheus exporter emits, and imports into Grafana 10+ as a file.

The check is against a real exposition: a pool runs against a real server with
the exporter registered, calls go through the pool channel (three at once on a
pool that takes one per connection, so one waits and the pool autoscales up),
the pool stops (its connections let go), and the registry's text is scraped. A renamed metric, or a panel added for one that
does not exist yet, fails here instead of showing "No data" to an operator.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import prometheus_client
import pykka
import pytest
from prometheus_client import CollectorRegistry

import grpcpool
from grpcpool.metrics import prometheus
from tests.pools import loopback_config, start_pool
from tests.servers import EchoServer, EchoStub
from tests.waiting import wait_until

DASHBOARD = Path(__file__).resolve().parent.parent / "docs" / "grafana" / "grpcpool.json"

# A PromQL name in a query: an identifier followed by a selector, a call or a
# range. Rough on purpose; what is not a metric is one of these words.
_NAME = re.compile(r"(?<![\w$.:])([a-zA-Z_:][a-zA-Z0-9_:]*)\s*[{(\[]")
_NOT_METRICS = frozenset(
    {
        # aggregations and their modifiers
        "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk",
        "quantile", "count_values", "group", "by", "without",
        # binary-operator modifiers
        "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
        # functions
        "rate", "irate", "increase", "delta", "idelta", "deriv", "resets", "changes",
        "histogram_quantile", "vector", "scalar", "abs", "ceil", "floor", "round",
        "clamp", "clamp_min", "clamp_max", "label_replace", "label_join", "absent",
        "sum_over_time", "avg_over_time", "max_over_time", "min_over_time",
        "count_over_time", "last_over_time", "time", "timestamp", "sort", "sort_desc",
        # Grafana's variable-query functions
        "label_values", "label_names", "metrics", "query_result",
    }
)  # fmt: skip


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, those inside collapsed rows too."""
    found = []
    for panel in board["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def queries(board: dict[str, Any]) -> list[str]:
    """Every PromQL expression: the panels' targets and the template variables'."""
    found = [target["expr"] for panel in panels(board) for target in panel.get("targets", [])]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            found.append(query["query"] if isinstance(query, dict) else query)
    return found


def metric_names(expression: str) -> set[str]:
    """The metric names a PromQL expression reads."""
    names = {name for name in _NAME.findall(expression) if name not in _NOT_METRICS}
    names.update(re.findall(r"\bgrpcpool_\w+", expression))
    return names


def exposed_names(text: str) -> set[str]:
    """Every series name an exposition holds or declares.

    A labelled metric with no sample yet is still declared by its ``# TYPE``
    line; a histogram declares its ``_bucket``, ``_sum`` and ``_count`` series.
    """
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            names.add(name)
            if kind == "histogram":
                names.update(f"{name}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


# The capacity series the dashboard's Capacity row reads, each with a sample
# (not only declared) once the fixture's burst has run: the queued-calls gauge
# from a pool.status report, the queue-wait histogram from a call that waited,
# the steps counter from the step up that the waiting call asked for.
CAPACITY_SAMPLES = (
    'grpcpool_pool_calls_queued{pool="dashboard"}',
    'grpcpool_call_queue_wait_seconds_count{pool="dashboard"}',
    'grpcpool_pool_autoscale_steps_total{direction="up",pool="dashboard"}',
)
# gRPC's per-connection series (gRFC A94) the dashboard's subchannel row reads,
# filtered by pool through grpc_lb_backend_service, each with a sample once the
# pool has connected and stopped: (series name, a label it must carry).
A94_SAMPLES = (
    ("grpc_subchannel_open_connections", 'grpc_lb_backend_service="dashboard"'),
    ("grpc_subchannel_disconnections_total", 'grpc_disconnect_error="subchannel shutdown"'),
)
# What filters a query by the pool variable: grpcpool's label, or gRPC's.
POOL_FILTERS = ('pool=~"$pool"', 'grpc_lb_backend_service=~"$pool"')
# The pool's connections each take one call at a time; the server holds each
# call this long, so a third caller waits for a slot.
CALL_SECONDS = 0.3


def _sampled(text: str, series: str) -> bool:
    return any(line.startswith(series + " ") for line in text.splitlines())


def _sampled_with(text: str, name: str, label: str) -> bool:
    """A sample of ``name`` whose labels include ``label`` (``key="value"``)."""
    return any(
        line.startswith(name + "{") and label in line.split("}", 1)[0]
        for line in text.splitlines()
    )


@pytest.fixture
def exposition(supervisors: list[pykka.ActorRef[Any]]) -> Iterator[str]:
    """The text a scrape of a registry with grpcpool's metrics returns after
    calls went through a pool connected to a real server: a pool of 2 that
    takes one call per connection and autoscales up to 3, and three calls at
    once, so one waits in the queue and grows the pool."""
    registry = CollectorRegistry()
    metrics = prometheus.register(registry)
    pool = {
        "telemetry_interval": 0.1,
        "max_calls_per_connection": 1,
        "autoscale": {"min_size": 2, "max_size": 3},
    }
    try:
        with EchoServer(delay=CALL_SECONDS) as server:
            start_pool(supervisors, loopback_config(server.port, 2, pool=pool), "dashboard")
            grpcpool.await_ready("dashboard", timeout=10.0, min_ready=2)
            stub = EchoStub(grpcpool.channel("dashboard"))
            with ThreadPoolExecutor(3) as callers:
                calls = [callers.submit(stub.Unary, b"scraped", timeout=10) for _ in range(3)]
                assert [call.result() for call in calls] == [b"scraped"] * 3
            assert wait_until(
                lambda: all(
                    _sampled(prometheus_client.generate_latest(registry).decode(), series)
                    for series in CAPACITY_SAMPLES
                ),
                timeout=10.0,
            ), prometheus_client.generate_latest(registry).decode()
            grpcpool.stop("dashboard")
            assert wait_until(
                lambda: all(
                    _sampled_with(prometheus_client.generate_latest(registry).decode(), *each)
                    for each in A94_SAMPLES
                ),
                timeout=10.0,
            ), prometheus_client.generate_latest(registry).decode()
            text = prometheus_client.generate_latest(registry).decode()
        yield text
    finally:
        metrics.close()


def test_the_name_parser_finds_metrics_and_skips_functions() -> None:
    """The rough PromQL reading keeps metric names (followed by a selector or a
    range, or any grpcpool_ name) and drops functions, keywords and variables."""
    expression = (
        'histogram_quantile(0.9, sum by (pool, le) (rate(a_bucket{pool=~"$pool"}'
        "[$__rate_interval]))) / on (pool) group_left max(b{x=\"1\"}) + vector(0) + c[5m]"
        " + grpcpool_bare"
    )
    assert metric_names(expression) == {"a_bucket", "b", "c", "grpcpool_bare"}


def test_every_query_names_a_metric_the_exporter_emits(exposition: str) -> None:
    """Each metric a panel or a template variable queries is in a real scrape of
    the Prometheus exporter, and each panel queries at least one of its metrics
    (grpcpool's, or gRPC's standard ones it publishes)."""
    exposed = exposed_names(exposition)
    board = dashboard()
    for expression in queries(board):
        names = metric_names(expression)
        assert names, f"no metric found in {expression!r}"
        missing = names - exposed
        assert not missing, f"{expression!r} queries {sorted(missing)}, not emitted"
    for panel in panels(board):
        if panel["type"] != "row":
            assert any(
                name.startswith(("grpcpool_", "grpc_subchannel_"))
                for target in panel["targets"]
                for name in metric_names(target["expr"])
            ), panel["title"]


def test_the_dashboard_covers_the_operators_questions() -> None:
    """Ready vs expected connections, calls in flight, connects and disconnects by
    reason, refreshes, the routing and capacity figures, and gRPC's open connections
    and disconnections by error (gRFC A94) each have a panel."""
    queried = {name for expression in queries(dashboard()) for name in metric_names(expression)}
    for name in (
        "grpcpool_pool_current_channels",
        "grpcpool_pool_expected_channels",
        "grpcpool_pool_calls_in_flight",
        "grpcpool_channel_connects_total",
        "grpcpool_channel_disconnects_total",
        "grpcpool_channel_refreshes_total",
        "grpcpool_pool_ejections_total",
        "grpcpool_pool_ejected_units",
        "grpcpool_pool_panic",
        "grpcpool_call_hedged_attempts_total",
        "grpcpool_call_hedge_wins_total",
        "grpcpool_pool_calls_queued",
        "grpcpool_call_queue_wait_seconds_bucket",
        "grpcpool_pool_autoscale_steps_total",
        "grpc_subchannel_open_connections",
        "grpc_subchannel_disconnections_total",
    ):
        assert name in queried, f"no panel shows {name}"


def test_the_capacity_panels_read_series_a_real_pool_fills(exposition: str) -> None:
    """The Capacity row's metrics carry samples after a burst on a capped,
    autoscaled pool: a call waited (the queue-wait histogram and the queued
    gauge) and the pool stepped up (the steps counter, direction up)."""
    for series in CAPACITY_SAMPLES:
        assert _sampled(exposition, series), series
    queried = {name for expression in queries(dashboard()) for name in metric_names(expression)}
    assert {"grpcpool_call_queue_wait_seconds_count", "grpcpool_pool_calls_queued"} <= queried


def test_the_subchannel_panels_read_series_a_real_pool_fills(exposition: str) -> None:
    """The gRPC subchannel row's metrics carry samples of the pool after it connected
    and stopped: its open connections, and disconnections 'subchannel shutdown' (the
    pool let its connections go)."""
    for name, label in A94_SAMPLES:
        assert _sampled_with(exposition, name, label), (name, label)


def test_the_dashboard_imports_into_grafana_10() -> None:
    """The JSON is what Grafana 10+ imports: a datasource variable DS_PROMETHEUS
    that every panel and query uses, a multi-value pool variable that every
    pool-labelled query filters on (gRPC's series by grpc_lb_backend_service, the
    pool's name), unique panel ids and a schema of 10's era."""
    board = dashboard()
    assert board["schemaVersion"] >= 38
    assert board["id"] is None and board["uid"]
    variables = {variable["name"]: variable for variable in board["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    assert variables["pool"]["type"] == "query"
    assert variables["pool"]["multi"] and variables["pool"]["includeAll"]
    datasource = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
    assert variables["pool"]["datasource"] == datasource
    ids = [panel["id"] for panel in panels(board)]
    assert len(ids) == len(set(ids))
    for panel in panels(board):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == datasource, panel["title"]
        assert panel.get("description"), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == datasource, panel["title"]
            if "grpcpool_supervisor_restarts_total" not in target["expr"]:
                assert any(f in target["expr"] for f in POOL_FILTERS), target["expr"]

"""The routing keys of ``pool``: ewma_decay, outlier_detection, panic_threshold, hedging."""

from __future__ import annotations

from typing import Any

import pytest

from grpcpool import Config
from grpcpool.config import (
    DEFAULT_EWMA_DECAY,
    DEFAULT_PANIC_THRESHOLD,
    FailurePercentageEjection,
    Hedging,
    OutlierDetection,
    SuccessRateEjection,
)
from grpcpool.errors import ConfigError

ENDPOINT = {"type": "local", "host": "127.0.0.1", "port": 50051}


def pool(**keys: Any) -> Any:
    """The pool section of a config built from ``keys``."""
    return Config.new(ENDPOINT, keys).pool


def test_defaults_leave_outlier_detection_and_hedging_off() -> None:
    """A pool without the keys decays latency over 10 s, panics below 50%, ejects and
    hedges nothing."""
    section = pool()
    assert section.ewma_decay == DEFAULT_EWMA_DECAY == 10.0
    assert section.panic_threshold == DEFAULT_PANIC_THRESHOLD == 50.0
    assert section.outlier_detection is None and section.hedging is None


def test_outlier_detection_from_a_mapping_takes_a50s_defaults() -> None:
    """An empty mapping turns outlier detection on with gRFC A50's figures; a field set
    keeps the others' defaults; None turns one way of judging off."""
    section = pool(outlier_detection={})
    assert section.outlier_detection == OutlierDetection(
        interval=10.0,
        base_ejection_time=30.0,
        max_ejection_time=300.0,
        max_ejection_percent=10,
        success_rate=SuccessRateEjection(1900, 100, 5, 100),
        failure_percentage=FailurePercentageEjection(85, 100, 5, 50),
    )
    tuned = pool(
        outlier_detection={
            "interval": 1,
            "max_ejection_percent": 50,
            "success_rate": None,
            "failure_percentage": {"threshold": 50, "minimum_hosts": 2, "request_volume": 20},
        }
    ).outlier_detection
    assert tuned is not None and tuned.success_rate is None
    assert tuned.failure_percentage == FailurePercentageEjection(50, 100, 2, 20)
    assert (tuned.interval, tuned.max_ejection_percent, tuned.base_ejection_time) == (1, 50, 30.0)


def test_hedging_from_a_mapping() -> None:
    """Hedging names its methods; delay is seconds or 'p95' (the default), two attempts
    and a 10% budget by default; a method named twice counts once."""
    section = pool(hedging={"methods": ["/kv.KV/Get", "/kv.KV/Get"], "delay": 0.05})
    assert section.hedging == Hedging(methods=("/kv.KV/Get",), delay=0.05)
    assert (section.hedging.max_attempts, section.hedging.budget) == (2, 0.1)
    assert pool(hedging={"methods": ("/kv.KV/Get",)}).hedging.delay == "p95"


@pytest.mark.parametrize(
    ("keys", "key", "says"),
    [
        ({"ewma_decay": 0}, "pool.ewma_decay", "> 0"),
        ({"ewma_decay": 10_000}, "pool.ewma_decay", "not milliseconds"),
        ({"panic_threshold": 101}, "pool.panic_threshold", "percentage"),
        ({"panic_threshold": -1}, "pool.panic_threshold", ">= 0"),
        ({"outlier_detection": 5}, "pool.outlier_detection", "mapping"),
        ({"outlier_detection": {"intervall": 1}}, "pool.outlier_detection.intervall", "unknown"),
        ({"outlier_detection": {"interval": 0}}, "pool.outlier_detection.interval", "> 0"),
        (
            {"outlier_detection": {"base_ejection_time": 60, "max_ejection_time": 30}},
            "pool.outlier_detection.max_ejection_time",
            ">= base_ejection_time",
        ),
        (
            {"outlier_detection": {"max_ejection_percent": 120}},
            "pool.outlier_detection.max_ejection_percent",
            "<= 100",
        ),
        (
            {"outlier_detection": {"failure_percentage": {"threshold": 101}}},
            "pool.outlier_detection.failure_percentage.threshold",
            "<= 100",
        ),
        (
            {"outlier_detection": {"success_rate": {"request_volume": 0}}},
            "pool.outlier_detection.success_rate.request_volume",
            ">= 1",
        ),
        ({"hedging": {"methods": []}}, "pool.hedging.methods", "at least one"),
        ({"hedging": {"methods": "/kv.KV/Get"}}, "pool.hedging.methods", "list"),
        ({"hedging": {"methods": ["Get"]}}, "pool.hedging.methods", "full method name"),
        ({"hedging": {"methods": ["/a.B/C"], "delay": "p99"}}, "pool.hedging.delay", "p95"),
        ({"hedging": {"methods": ["/a.B/C"], "delay": 500}}, "pool.hedging.delay", "seconds"),
        ({"hedging": {"methods": ["/a.B/C"], "max_attempts": 1}}, "pool.hedging.max_attempts", ">= 2"),
        ({"hedging": {"methods": ["/a.B/C"], "max_attempts": 6}}, "pool.hedging.max_attempts", "<= 5"),
        ({"hedging": {"methods": ["/a.B/C"], "budget": 0}}, "pool.hedging.budget", "> 0"),
    ],
)
def test_bad_routing_keys_name_the_key(keys: dict[str, Any], key: str, says: str) -> None:
    """Each bad value is a ConfigError naming its dotted key and what is wrong."""
    with pytest.raises(ConfigError) as raised:
        pool(**keys)
    assert raised.value.key == key
    assert says in str(raised.value)

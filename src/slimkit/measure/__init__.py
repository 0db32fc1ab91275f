"""Measurement: accuracy, latency, size, parameters, MACs, parity and environment, in one record."""

from slimkit.measure.counters import (
    LayerCost,
    ModelCost,
    count_costs,
    count_parameters,
    register_mac_rule,
)
from slimkit.measure.environment import describe_cpu, environment
from slimkit.measure.latency import (
    IsolatedTiming,
    LatencyConfig,
    LatencyStats,
    measure_isolated,
    measure_latency,
    peak_rss_bytes,
    pinned_cpus,
)
from slimkit.measure.measure import accuracy_of, measure
from slimkit.measure.parity import ParityResult, compare_logits
from slimkit.measure.record import MeasureRecord

__all__ = [
    "IsolatedTiming",
    "LatencyConfig",
    "LatencyStats",
    "LayerCost",
    "MeasureRecord",
    "ModelCost",
    "ParityResult",
    "accuracy_of",
    "compare_logits",
    "count_costs",
    "count_parameters",
    "describe_cpu",
    "environment",
    "measure",
    "measure_isolated",
    "measure_latency",
    "peak_rss_bytes",
    "pinned_cpus",
    "register_mac_rule",
]

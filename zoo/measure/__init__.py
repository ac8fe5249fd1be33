"""Measuring models: parameter and MAC counts, the per-op profiler, wall-clock timing, result records."""

from zoo.measure.complexity import count_macs, count_params, fvcore_count, module_macs
from zoo.measure.profiler import Complexity, LayerRow, complexity, format_summary, format_table, profile
from zoo.measure.records import checkpoint_run, machine_info, read_table, write_table
from zoo.measure.timing import benchmark, keep_freed_memory, median_seconds, torch_threads

__all__ = [
    "Complexity", "LayerRow", "benchmark", "checkpoint_run", "complexity", "count_macs", "count_params",
    "format_summary", "format_table", "fvcore_count", "keep_freed_memory", "machine_info", "median_seconds",
    "module_macs", "profile", "read_table", "torch_threads", "write_table",
]

"""Latency statistics, interleaved timing and GEMM peak: one method for every runtime."""

from edgevit.bench.timing import interleaved, summarize

__all__ = ["interleaved", "summarize"]

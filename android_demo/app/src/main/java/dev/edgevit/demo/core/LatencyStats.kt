package dev.edgevit.demo.core

import kotlin.math.ceil
import kotlin.math.sqrt

/** The same statistics as `edgevit bench` (nearest-rank percentiles, sample standard deviation). */
data class LatencyStats(
    val meanMs: Double,
    val stdMs: Double,
    val minMs: Double,
    val p50Ms: Double,
    val p90Ms: Double,
    val p99Ms: Double,
    val runs: Int
) {
    companion object {
        fun of(latenciesMs: List<Double>): LatencyStats {
            require(latenciesMs.isNotEmpty()) { "no latencies" }
            val xs = latenciesMs.sorted()
            val n = xs.size
            val mean = xs.sum() / n
            val std = if (n > 1) sqrt(xs.sumOf { (it - mean) * (it - mean) } / (n - 1)) else 0.0

            fun pct(p: Double) = xs[minOf(n - 1, maxOf(0, ceil(p / 100.0 * n).toInt() - 1))]
            return LatencyStats(mean, std, xs[0], pct(50.0), pct(90.0), pct(99.0), n)
        }
    }
}

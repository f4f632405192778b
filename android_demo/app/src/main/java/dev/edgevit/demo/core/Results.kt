package dev.edgevit.demo.core

/** The results file of a benchmark run, per edgevit/bench/device_results.schema.json (version 1). */
data class DeviceInfo(val model: String, val os: String, val osVersion: String, val soc: String?)

data class BenchmarkResult(
    val appVersion: String,
    val device: DeviceInfo,
    val runtime: String,
    val runtimeVersion: String?,
    val computeUnits: String?,
    val threads: Int?,
    val manifest: Manifest,
    val artifactBytes: Long?,
    val warmup: Int,
    val loadMs: Double?,
    val firstRunMs: Double?,
    val latenciesMs: List<Double>,
    val peakMemoryMb: Double?,
    val thermalState: String,
    val golden: Golden.Comparison?,
    val timestamp: String
) {
    fun toJson(): String = Json.write(
        linkedMapOf(
            "schema" to "edgevit.device-results",
            "version" to 1,
            "app" to linkedMapOf("name" to "edgevit-android-demo", "version" to appVersion),
            "device" to linkedMapOf(
                "model" to device.model,
                "os" to device.os,
                "os_version" to device.osVersion,
                "soc" to device.soc
            ),
            "runtime" to runtime,
            "runtime_version" to runtimeVersion,
            "compute_units" to computeUnits,
            "threads" to threads,
            "batch" to (manifest.input.shape.firstOrNull() ?: 1),
            "artifact" to linkedMapOf(
                "name" to "${manifest.model}-${manifest.target}-${manifest.precision}",
                "model" to manifest.model,
                "target" to manifest.target,
                "precision" to manifest.precision,
                "artifact_sha256" to manifest.artifactSha256,
                "size_bytes" to artifactBytes,
                "input_shape" to manifest.input.shape
            ),
            "warmup" to warmup,
            "load_ms" to loadMs,
            "first_run_ms" to firstRunMs,
            "latencies_ms" to latenciesMs,
            "peak_memory_mb" to peakMemoryMb,
            "thermal_state" to thermalState,
            "golden_check" to golden?.let {
                linkedMapOf(
                    "passed" to it.passes(
                        Golden.limits(manifest.precision).first,
                        Golden.limits(manifest.precision).second
                    ),
                    "max_abs" to it.maxAbs,
                    "max_rel" to it.maxRel
                )
            },
            "timestamp" to timestamp
        )
    )
}

package dev.edgevit.demo

import android.app.Activity
import android.os.Build
import android.os.Bundle
import android.os.SystemClock
import android.widget.TextView
import dev.edgevit.demo.core.BenchmarkResult
import dev.edgevit.demo.core.DeviceInfo
import dev.edgevit.demo.core.LatencyStats
import dev.edgevit.demo.engine.InferenceEngine
import java.io.File
import java.time.Instant

/**
 * Benchmark an artifact folder and write the results JSON (edgevit/bench/device_results.schema.json) to
 * filesDir/results/. Startable from adb:
 *
 *   adb shell am start -n dev.edgevit.demo/.BenchmarkActivity \
 *     --es model_dir /data/user/0/dev.edgevit.demo/files/models/digits_xnnpack \
 *     --ei warmup 10 --ei iterations 50 --ei threads 4
 */
class BenchmarkActivity : Activity() {
    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        setContentView(R.layout.activity_benchmark)
        val out = findViewById<TextView>(R.id.benchmark_result)
        val folder = File(intent.getStringExtra(MainActivity.EXTRA_MODEL_DIR) ?: return finish())
        val warmup = intent.getIntExtra(EXTRA_WARMUP, 10)
        val iterations = intent.getIntExtra(EXTRA_ITERATIONS, 50)
        val threads = intent.getIntExtra(EXTRA_THREADS, MainActivity.DEFAULT_THREADS)
        out.text = getString(R.string.benchmark_running, iterations)
        Thread {
            val file = runBenchmark(folder, warmup, iterations, threads)
            runOnUiThread { out.text = getString(R.string.benchmark_done, file.path) }
        }.start()
    }

    private fun runBenchmark(folder: File, warmup: Int, iterations: Int, threads: Int): File {
        val manifest = ArtifactStore.manifest(folder)
        val t0 = SystemClock.elapsedRealtimeNanos()
        val engine = InferenceEngine.open(folder, manifest, threads)
        val loadMs = (SystemClock.elapsedRealtimeNanos() - t0) / 1e6
        val input = ArtifactStore.goldenInput(folder, manifest)
        val shape = manifest.goldenInput.shape.map { it.toLong() }.toLongArray()
        val t1 = SystemClock.elapsedRealtimeNanos()
        engine.run(input, shape)
        val firstMs = (SystemClock.elapsedRealtimeNanos() - t1) / 1e6
        repeat(warmup) { engine.run(input, shape) }
        val latencies = (0 until iterations).map {
            val t = SystemClock.elapsedRealtimeNanos()
            engine.run(input, shape)
            (SystemClock.elapsedRealtimeNanos() - t) / 1e6
        }
        val check = SelfCheck.run(folder, manifest, engine)
        engine.close()
        val result = BenchmarkResult(
            appVersion = APP_VERSION,
            device = DeviceInfo(Build.MODEL, "Android", Build.VERSION.RELEASE, Build.SOC_MODEL),
            runtime = engine.runtime,
            runtimeVersion = null,
            computeUnits = engine.computeUnits,
            threads = threads,
            manifest = manifest,
            artifactBytes = File(folder, manifest.artifact).length(),
            warmup = warmup,
            loadMs = loadMs,
            firstRunMs = firstMs,
            latenciesMs = latencies,
            peakMemoryMb = Runtime.getRuntime().totalMemory() / 1e6,
            thermalState = "unknown",
            golden = check.comparison,
            timestamp = Instant.now().toString()
        )
        val dir = File(filesDir, "results").apply { mkdirs() }
        val file = File(dir, "${folder.name}-${System.currentTimeMillis()}.json")
        file.writeText(result.toJson())
        val stats = LatencyStats.of(latencies)
        android.util.Log.i(TAG, "p50 %.2f ms p90 %.2f ms -> %s".format(stats.p50Ms, stats.p90Ms, file.path))
        return file
    }

    companion object {
        const val EXTRA_WARMUP = "warmup"
        const val EXTRA_ITERATIONS = "iterations"
        const val EXTRA_THREADS = "threads"
        const val APP_VERSION = "0.1.0"
        const val TAG = "edgevit"
    }
}

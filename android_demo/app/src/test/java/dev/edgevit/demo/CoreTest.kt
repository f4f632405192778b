package dev.edgevit.demo

import dev.edgevit.demo.core.BenchmarkResult
import dev.edgevit.demo.core.DeviceInfo
import dev.edgevit.demo.core.Golden
import dev.edgevit.demo.core.Json
import dev.edgevit.demo.core.LatencyStats
import dev.edgevit.demo.core.Layout
import dev.edgevit.demo.core.Manifest
import dev.edgevit.demo.core.PreprocessSpec
import dev.edgevit.demo.core.Preprocessor
import dev.edgevit.demo.core.RuntimeVersions
import dev.edgevit.demo.core.SignatureOrder
import dev.edgevit.demo.core.TopK
import dev.edgevit.demo.core.Yuv
import java.io.File
import javax.imageio.ImageIO
import kotlin.math.abs

/**
 * JVM tests of the app's pure-Kotlin core against the golden pairs that `edgevit convert` writes
 * (tests/data/app_fixture). Run by android_demo/ci/check.sh: `java ... CoreTestKt FIXTURE_DIR SCHEMA_JSON`.
 */
private var passed = 0
private var failed = 0

private fun test(name: String, body: () -> Unit) {
    try {
        body()
        passed++
        println("PASS $name")
    } catch (t: Throwable) {
        failed++
        println("FAIL $name: $t")
    }
}

private fun check(cond: Boolean, msg: () -> String) {
    if (!cond) throw AssertionError(msg())
}

private fun argbOf(file: File): Triple<IntArray, Int, Int> {
    val img = ImageIO.read(file) ?: throw AssertionError("cannot decode $file")
    val px = IntArray(img.width * img.height)
    img.getRGB(0, 0, img.width, img.height, px, 0, img.width)
    return Triple(px, img.width, img.height)
}

fun main(args: Array<String>) {
    val fixtures = File(args[0])
    val schema = File(args[1])
    val folders = fixtures.listFiles()!!.filter { File(it, "manifest.json").isFile }.sortedBy { it.name }
    check(folders.size >= 2) { "expected fixture folders in $fixtures" }

    for (folder in folders) {
        val manifest = Manifest.parse(File(folder, "manifest.json").readText())

        test("${folder.name}: manifest parses") {
            val shape = if (manifest.inputLayout == "NHWC") listOf(1, 64, 64, 3) else listOf(1, 3, 64, 64)
            check(manifest.input.shape == shape) { "input shape ${manifest.input.shape} (${manifest.inputLayout})" }
            check(manifest.preprocess.mean.size == 3 && manifest.preprocess.std.size == 3) { "mean/std" }
            check(manifest.labels?.size == 10) { "labels ${manifest.labels}" }
            check(manifest.goldenOutputs.isNotEmpty()) { "no golden outputs" }
        }

        test("${folder.name}: preprocessing reproduces the Python golden vector") {
            val pre = Preprocessor(manifest.preprocess, manifest.takesRawPixels)
            val (px, w, h) = argbOf(File(folder, manifest.goldenImage))
            check(Pair(w, h) == pre.scaledSize(w, h)) { "golden image is not at the resize size" }
            // in the artifact's layout (NHWC for a `--layout nhwc` LiteRT folder), as Classifier feeds the engine
            val (mine, shape) = Layout.forArtifact(pre.toTensor(px, w, h), pre.height, pre.width, manifest.inputLayout)
            check(shape.map { it.toInt() } == manifest.goldenInput.shape) { "shape ${shape.toList()}" }
            val golden = Golden.readFloats(File(folder, manifest.goldenInput.file).readBytes())
            check(mine.size == golden.size) { "size ${mine.size} vs ${golden.size}" }
            var worst = 0f
            for (i in mine.indices) worst = maxOf(worst, abs(mine[i] - golden[i]))
            check(worst <= 1e-5f) { "max abs difference $worst" }
        }

        test("${folder.name}: resizing a picture reproduces Python's preprocessing") {
            // Pillow's resize re-implemented in Resize.kt: stated tolerance 1 pixel level (1/255 of the range,
            // before normalisation); the measured worst difference is printed.
            val rc = manifest.resizeCheck ?: throw AssertionError("manifest has no golden.resize_check")
            val pre = Preprocessor(manifest.preprocess, manifest.takesRawPixels)
            val (px, w, h) = argbOf(File(folder, rc.image))
            check(pre.scaledSize(w, h) != Pair(w, h)) { "the resize-check picture needs no resizing" }
            val (mine, _) = Layout.forArtifact(pre.prepare(px, w, h), pre.height, pre.width, manifest.inputLayout)
            val golden = Golden.readFloats(File(folder, rc.input.file).readBytes())
            check(mine.size == golden.size) { "size ${mine.size} vs ${golden.size}" }
            val plane = pre.height * pre.width
            var worstLevels = 0.0
            var differing = 0
            for (i in mine.indices) {
                val c = if (manifest.inputLayout == "NHWC") i % 3 else i / plane
                val scale = if (manifest.takesRawPixels) 1.0 else 255.0 * manifest.preprocess.std[c]
                val levels = abs(mine[i] - golden[i]) * scale
                worstLevels = maxOf(worstLevels, levels)
                if (levels > 0.01) differing++
            }
            println(
                "  resize check ${manifest.preprocess.interpolation} ${w}x$h: worst ${"%.3f".format(worstLevels)} " +
                    "levels, $differing of ${mine.size} values differ"
            )
            check(worstLevels <= 1.0 + 1e-3) { "worst difference $worstLevels pixel levels > 1" }
        }

        test("${folder.name}: golden outputs compare to themselves and detect drift") {
            val out = Golden.readFloats(File(folder, manifest.goldenOutputs[0].file).readBytes())
            val (rel, cos) = Golden.limits(manifest.precision)
            check(Golden.compare(out, out).passes(rel, cos)) { "self comparison failed" }
            val drifted = FloatArray(out.size) {
                out[it] + 0.5f * (out.maxOrNull() ?: 1f) * (
                    if (it % 2 ==
                        0
                    ) {
                        1
                    } else {
                        -1
                    }
                    )
            }
            check(!Golden.compare(out, drifted).passes(rel, cos)) { "drift not detected" }
        }
    }

    test("scaled size and crop follow the Python rule") {
        val m = Manifest.parse(File(folders[0], "manifest.json").readText())
        check(m.preprocess.geometry == "edgevit-v1") { "the digits model was trained with edgevit-v1" }
        val pre = Preprocessor(m.preprocess, false)
        check(pre.scaledSize(640, 480) == Pair(89, 67)) { "got ${pre.scaledSize(640, 480)}" }
        check(pre.cropOrigin(89, 67) == Pair(12, 1)) { "got ${pre.cropOrigin(89, 67)}" }
    }

    test("timm-eval geometry matches timm's eval transform") {
        // expected values: timm's transform as tests/test_preprocess_timm.py transcribes it (TIMM_CASES there)
        val mean = listOf(0.485f, 0.456f, 0.406f)
        val std = listOf(0.229f, 0.224f, 0.225f)
        val square = Preprocessor(
            PreprocessSpec(listOf(224, 224), mean, std, listOf(235, 235), 0.95, "bicubic", "RGB", "timm-eval"),
            false
        )
        check(square.scaledSize(333, 500) == Pair(235, 352)) { "got ${square.scaledSize(333, 500)}" }
        check(square.scaledSize(500, 333) == Pair(352, 235)) { "got ${square.scaledSize(500, 333)}" }
        check(square.scaledSize(640, 480) == Pair(313, 235)) { "got ${square.scaledSize(640, 480)}" }
        check(square.cropOrigin(235, 352) == Pair(6, 64)) { "got ${square.cropOrigin(235, 352)}" }
        check(square.cropOrigin(313, 235) == Pair(44, 6)) { "got ${square.cropOrigin(313, 235)}" }
        val wide = Preprocessor(
            PreprocessSpec(listOf(224, 256), mean, std, listOf(235, 269), 0.95, "bicubic", "RGB", "timm-eval"),
            false
        )
        check(wide.scaledSize(333, 500) == Pair(269, 404)) { "got ${wide.scaledSize(333, 500)}" }
        check(wide.scaledSize(301, 299) == Pair(269, 267)) { "got ${wide.scaledSize(301, 299)}" }
        check(wide.cropOrigin(269, 404) == Pair(6, 90)) { "got ${wide.cropOrigin(269, 404)}" }
    }

    test("an artifact asking for a newer runtime than the app links is refused by name") {
        val m = Manifest.parse(File(folders.first { it.name.endsWith("xnnpack") }, "manifest.json").readText())
        val req = m.runtimeRequirement ?: throw AssertionError("fixture manifest has no runtime_requirements")
        RuntimeVersions.requireSupported(m) // the fixture, made by this edgevit, must load
        val newer = m.copy(runtimeRequirement = req.copy(minVersion = "99.0.0"))
        val message = try {
            RuntimeVersions.requireSupported(newer)
            null
        } catch (e: IllegalStateException) {
            e.message
        }
        check(message != null && "99.0.0" in message && "executorch" in message) { "not refused: $message" }
        check(RuntimeVersions.compare("1.10.0", "1.9.2") > 0 && RuntimeVersions.compare("1.5.1", "1.5.0") > 0) {
            "numeric version order"
        }
    }

    test("top-k orders scores and names labels") {
        val top = TopK.topK(floatArrayOf(0.1f, 3f, -1f, 2f), 3, listOf("a", "b", "c", "d"))
        check(top.map { it.label } == listOf("b", "d", "a")) { "got $top" }
        check(TopK.topK(floatArrayOf(1f, 2f), 5, null).map { it.label } == listOf("class 1", "class 0")) { "no labels" }
        val p = TopK.softmax(floatArrayOf(1f, 2f, 3f))
        check(abs(p.sum() - 1f) < 1e-6 && p[2] > p[1]) { "softmax ${p.toList()}" }
    }

    test("NCHW to NHWC interleaves the channel planes") {
        // 3 channels of a 2x2 image: value = 100 c + pixel index
        val nchw = FloatArray(12) { (100 * (it / 4) + it % 4).toFloat() }
        val nhwc = Layout.nchwToNhwc(nchw, 3, 2, 2)
        check(nhwc.toList() == listOf(0f, 100f, 200f, 1f, 101f, 201f, 2f, 102f, 202f, 3f, 103f, 203f)) {
            "got ${nhwc.toList()}"
        }
        check(Layout.forArtifact(nchw, 2, 2, "NCHW").first === nchw) { "NCHW must pass through" }
    }

    test("LiteRT signature outputs are read in index order") {
        val keys = listOf("output_10", "output_2", "output_0", "output_1")
        check(SignatureOrder.outputs(keys) == listOf("output_0", "output_1", "output_2", "output_10")) {
            "got ${SignatureOrder.outputs(keys)}"
        }
    }

    test("latency statistics match edgevit bench (nearest rank)") {
        val s = LatencyStats.of((1..100).map { it.toDouble() })
        check(s.p50Ms == 50.0 && s.p90Ms == 90.0 && s.p99Ms == 99.0 && s.minMs == 1.0) { "$s" }
        check(abs(s.meanMs - 50.5) < 1e-9 && abs(s.stdMs - 29.011491975882016) < 1e-9) { "$s" }
    }

    test("NV21 frames convert to ARGB") {
        val w = 2
        val h = 2
        val nv21 = byteArrayOf(76, 76, 76, 76, 0xff.toByte(), 85) // Y = 76, V = 255, U = 85: pure red
        val px = Yuv.nv21ToArgb(nv21, w, h)
        val r = (px[0] shr 16) and 0xff
        val g = (px[0] shr 8) and 0xff
        val b = px[0] and 0xff
        check(r > 240 && g < 15 && b < 15) { "got $r $g $b" }
    }

    test("results JSON carries every key the schema requires") {
        val m = Manifest.parse(File(folders[0], "manifest.json").readText())
        val result = BenchmarkResult(
            "0.1.0", DeviceInfo("Pixel 8", "Android", "15", "Tensor G3"), "executorch", null, "xnnpack", 4, m,
            1234L, 10, 12.5, 3.0, listOf(1.0, 2.0, 3.0), 100.0, "unknown", null, "2026-11-21T00:00:00Z"
        )

        @Suppress("UNCHECKED_CAST")
        val json = Json.parse(result.toJson()) as Map<String, Any?>

        @Suppress("UNCHECKED_CAST")
        val spec = Json.parse(schema.readText()) as Map<String, Any?>
        val required = spec["required"] as List<*>
        check(required.all { it in json }) { "missing ${required.filter { it !in json }}" }
        @Suppress("UNCHECKED_CAST")
        val props = spec["properties"] as Map<String, Map<String, Any?>>
        for (key in listOf("app", "device", "artifact")) {
            @Suppress("UNCHECKED_CAST")
            val sub = (props[key]!!["required"] as List<*>)

            @Suppress("UNCHECKED_CAST")
            val obj = json[key] as Map<String, Any?>
            check(sub.all { it in obj }) { "$key lacks ${sub.filter { it !in obj }}" }
        }
        check(json["schema"] == "edgevit.device-results") { "schema id" }
    }

    test("JSON reader handles escapes, numbers and nesting") {
        val v = Json.parse("""{"a": [1, -2.5e1, "x\"y\u0041"], "b": {"c": null, "d": true}}""") as Map<*, *>
        check((v["a"] as List<*>)[1] == -25.0 && (v["a"] as List<*>)[2] == "x\"yA") { "$v" }
        check(Json.parse(Json.write(v)) == v) { "round trip" }
    }

    println("core: $passed passed, $failed failed")
    if (failed > 0) kotlin.system.exitProcess(1)
}

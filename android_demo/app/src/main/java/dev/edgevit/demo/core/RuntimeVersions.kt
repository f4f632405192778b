package dev.edgevit.demo.core

/**
 * The runtime versions this app links (app/build.gradle.kts; tests/apps checks they agree with it and with the
 * versions edgevit's pyproject.toml makes artifacts with), and the check every engine runs on load.
 */
object RuntimeVersions {
    const val EXECUTORCH = "1.5.1"
    const val ONNXRUNTIME = "1.31.0"
    const val LITERT = "2.3.0"

    fun linked(runtime: String): String? = when (runtime) {
        "executorch" -> EXECUTORCH
        "onnxruntime" -> ONNXRUNTIME
        "litert" -> LITERT
        else -> null
    }

    /** -1, 0, 1 comparing dotted versions numerically ("1.10.0" > "1.9.2"); a non-numeric part counts as 0. */
    fun compare(a: String, b: String): Int {
        val x = a.split(".").map { it.takeWhile(Char::isDigit).toIntOrNull() ?: 0 }
        val y = b.split(".").map { it.takeWhile(Char::isDigit).toIntOrNull() ?: 0 }
        for (i in 0 until maxOf(x.size, y.size)) {
            val d = x.getOrElse(i) { 0 }.compareTo(y.getOrElse(i) { 0 })
            if (d != 0) return d
        }
        return 0
    }

    /** Throws with a message naming both versions when the artifact needs a newer runtime than the app links. */
    fun requireSupported(manifest: Manifest) {
        val req = manifest.runtimeRequirement ?: return
        val have = linked(req.runtime) ?: return
        check(compare(have, req.minVersion) >= 0) {
            "${manifest.artifact} needs ${req.runtime} >= ${req.minVersion} (${req.why}), but this app links " +
                "${req.runtime} $have: update the app's ${req.runtime} dependency, or convert with edgevit using " +
                "${req.runtime} $have"
        }
    }
}

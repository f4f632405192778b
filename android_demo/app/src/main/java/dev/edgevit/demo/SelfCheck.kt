package dev.edgevit.demo

import dev.edgevit.demo.core.Golden
import dev.edgevit.demo.core.Manifest
import dev.edgevit.demo.engine.InferenceEngine
import java.io.File

/** First-launch check: replay the golden input through the artifact and compare with PyTorch's outputs. */
object SelfCheck {
    data class Outcome(val passed: Boolean, val comparison: Golden.Comparison, val message: String)

    fun run(folder: File, manifest: Manifest, engine: InferenceEngine): Outcome {
        val input = ArtifactStore.goldenInput(folder, manifest)
        val shape = manifest.goldenInput.shape.map { it.toLong() }.toLongArray()
        val outputs = engine.run(input, shape)
        val expected = ArtifactStore.goldenOutputs(folder, manifest)
        val (maxRel, minCos) = Golden.limits(manifest.precision)
        val comparisons = expected.zip(outputs).map { (e, o) -> Golden.compare(e, o) }
        val worst = comparisons.maxByOrNull { it.maxRel } ?: error("artifact returned no outputs")
        val passed = comparisons.all { it.passes(maxRel, minCos) }
        val verdict = if (passed) "PASS" else "FAIL"
        return Outcome(
            passed,
            worst,
            "golden check $verdict: max rel %.2e, cosine %.6f".format(worst.maxRel, worst.cosine)
        )
    }
}

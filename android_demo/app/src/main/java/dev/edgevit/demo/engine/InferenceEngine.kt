package dev.edgevit.demo.engine

import dev.edgevit.demo.core.Manifest
import dev.edgevit.demo.core.RuntimeVersions
import java.io.File

/** One engine protocol, one implementation per runtime. */
interface InferenceEngine : AutoCloseable {
    val runtime: String
    val computeUnits: String

    /** Runs the artifact on one float input in its manifest layout; returns the outputs in manifest order, flattened. */
    fun run(input: FloatArray, shape: LongArray): List<FloatArray>

    companion object {
        /** The engine for an artifact folder, chosen by the manifest's target. */
        fun open(folder: File, manifest: Manifest, threads: Int): InferenceEngine {
            val artifact = File(folder, manifest.artifact)
            require(artifact.exists()) { "artifact ${artifact.path} named in the manifest is missing" }
            RuntimeVersions.requireSupported(manifest)
            return when (manifest.target) {
                "executorch" -> ExecuTorchEngine(artifact, threads)

                "onnx", "ort" -> OrtEngine(artifact, threads)

                "litert" -> LiteRtEngine(artifact, threads)

                else -> throw IllegalArgumentException(
                    "target ${manifest.target} does not run on Android; convert with --target executorch, ort or litert"
                )
            }
        }
    }
}

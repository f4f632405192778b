package dev.edgevit.demo.engine

import ai.onnxruntime.OnnxTensor
import ai.onnxruntime.OrtEnvironment
import ai.onnxruntime.OrtSession
import java.io.File
import java.nio.FloatBuffer

/** ONNX Runtime Mobile (.ort, or .onnx) on the CPU execution provider. */
class OrtEngine(artifact: File, threads: Int) : InferenceEngine {
    private val env: OrtEnvironment = OrtEnvironment.getEnvironment()
    private val session: OrtSession
    override val runtime = "onnxruntime"
    override val computeUnits = "cpu"

    init {
        val options = OrtSession.SessionOptions()
        options.setIntraOpNumThreads(threads)
        // spinning worker threads burn battery and steal cores from the UI between runs
        options.addConfigEntry("session.intra_op.allow_spinning", "0")
        session = env.createSession(artifact.absolutePath, options)
    }

    override fun run(input: FloatArray, shape: LongArray): List<FloatArray> {
        val name = session.inputNames.first()
        OnnxTensor.createTensor(env, FloatBuffer.wrap(input), shape).use { tensor ->
            session.run(mapOf(name to tensor)).use { result ->
                return (0 until result.size()).map { i ->
                    val value = result.get(i) as OnnxTensor
                    val buffer = value.floatBuffer
                    FloatArray(buffer.remaining()).also { buffer.get(it) }
                }
            }
        }
    }

    override fun close() {
        session.close()
    }
}

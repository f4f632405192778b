package dev.edgevit.demo.engine

import dev.edgevit.demo.core.SignatureOrder
import java.io.File
import java.nio.ByteBuffer
import java.nio.ByteOrder
import java.nio.FloatBuffer
import org.tensorflow.lite.DataType
import org.tensorflow.lite.Interpreter

/**
 * LiteRT (.tflite) with the XNNPACK CPU kernels, through the model's "serving_default" signature (the one
 * `edgevit convert --target litert` writes). Outputs are the signature's output_0, output_1, ... in index order,
 * which is the manifest's output order (the Python runner reads them the same way). The input is taken in the
 * artifact's own layout (manifest input.layout: NCHW, or NHWC for `--layout nhwc`).
 */
class LiteRtEngine(artifact: File, threads: Int) : InferenceEngine {
    private val interpreter: Interpreter
    private val inputKey: String
    private val outputKeys: List<String>
    override val runtime = "litert"
    override val computeUnits = "cpu"

    init {
        val options = Interpreter.Options().setNumThreads(threads).setUseXNNPACK(true)
        interpreter = Interpreter(artifact, options)
        val signatures = interpreter.signatureKeys.toList()
        require(SIGNATURE in signatures) {
            "${artifact.name} has no '$SIGNATURE' signature (it has $signatures); convert it with edgevit --target litert"
        }
        val inputs = interpreter.getSignatureInputs(SIGNATURE).toList()
        require(inputs.size == 1) { "${artifact.name} takes ${inputs.size} inputs; edgevit artifacts take one" }
        inputKey = inputs.first()
        outputKeys = SignatureOrder.outputs(interpreter.getSignatureOutputs(SIGNATURE).toList())
        val tensor = interpreter.getInputTensorFromSignature(inputKey, SIGNATURE)
        require(tensor.dataType() == DataType.FLOAT32) {
            "${artifact.name} takes ${tensor.dataType()} input; edgevit keeps float32 input at every precision"
        }
    }

    override fun run(input: FloatArray, shape: LongArray): List<FloatArray> {
        val expected = interpreter.getInputTensorFromSignature(inputKey, SIGNATURE).shape()
        require(shape.map { it.toInt() } == expected.toList()) {
            "input shape ${shape.toList()} does not match the artifact's ${expected.toList()} (its manifest layout)"
        }
        val buffer = ByteBuffer.allocateDirect(input.size * 4).order(ByteOrder.nativeOrder())
        buffer.asFloatBuffer().put(input)
        val outputs = outputKeys.associateWith { key ->
            val n = interpreter.getOutputTensorFromSignature(key, SIGNATURE).numElements()
            FloatBuffer.allocate(n)
        }
        interpreter.runSignature(mapOf<String, Any>(inputKey to buffer), outputs.toMutableMap<String, Any>(), SIGNATURE)
        return outputKeys.map { key ->
            val out = outputs.getValue(key)
            out.rewind()
            FloatArray(out.remaining()).also { out.get(it) }
        }
    }

    override fun close() {
        interpreter.close()
    }

    companion object {
        const val SIGNATURE = "serving_default"
    }
}

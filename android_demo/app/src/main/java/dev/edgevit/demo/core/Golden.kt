package dev.edgevit.demo.core

import java.nio.ByteBuffer
import java.nio.ByteOrder
import kotlin.math.abs
import kotlin.math.sqrt

/** The golden pair check every app runs on first launch: replay input.bin, compare with PyTorch's outputs. */
object Golden {
    fun readFloats(bytes: ByteArray): FloatArray {
        val buf = ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer()
        return FloatArray(buf.remaining()).also { buf.get(it) }
    }

    data class Comparison(val maxAbs: Double, val maxRel: Double, val cosine: Double, val top1Agrees: Boolean) {
        fun passes(maxRelLimit: Double, minCosine: Double) = maxRel <= maxRelLimit && cosine >= minCosine
    }

    fun compare(reference: FloatArray, actual: FloatArray): Comparison {
        require(reference.size == actual.size) { "output has ${actual.size} values, golden has ${reference.size}" }
        var maxAbs = 0.0
        var refMax = 0.0
        var dot = 0.0
        var nr = 0.0
        var na = 0.0
        for (i in reference.indices) {
            val r = reference[i].toDouble()
            val a = actual[i].toDouble()
            maxAbs = maxOf(maxAbs, abs(a - r))
            refMax = maxOf(refMax, abs(r))
            dot += r * a
            nr += r * r
            na += a * a
        }
        val cosine = if (nr > 0 && na > 0) dot / (sqrt(nr) * sqrt(na)) else 1.0
        return Comparison(maxAbs, maxAbs / maxOf(refMax, 1e-12), cosine, TopK.argmax(reference) == TopK.argmax(actual))
    }

    /** Limits by precision, mirroring edgevit's tolerance table for the golden input. */
    fun limits(precision: String): Pair<Double, Double> = when (precision) {
        "fp32" -> Pair(2e-4, 0.99999)
        "fp16", "int8w", "pal8" -> Pair(5e-2, 0.995)
        else -> Pair(0.3, 0.97)
    }
}

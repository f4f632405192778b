package dev.edgevit.demo.core

import kotlin.math.abs
import kotlin.math.floor
import kotlin.math.max
import kotlin.math.min

/**
 * The resize the Python side uses (Pillow's `Image.resize` with BICUBIC, BILINEAR or NEAREST), in plain Kotlin, so
 * the app's input matches the golden vectors: a separable convolution, horizontal pass first, each output pixel
 * centred at (i + 0.5) * scale in the source; when shrinking, the filter's support is widened by the scale
 * (antialiasing), which Android's `Bitmap.createScaledBitmap` (bilinear over 2x2 pixels) does not do. Weights are
 * normalized, rounded to 22-bit fixed point, and each pass rounds and clamps to 8 bits, as Pillow does.
 * Measured against Pillow on the fixture's resize-check picture by the JVM tests (CoreTest: exact or 1 level).
 */
object Resize {
    private const val PRECISION_BITS = 32 - 8 - 2

    private fun bicubic(x: Double): Double {
        val a = -0.5
        val t = abs(x)
        return when {
            t < 1.0 -> ((a + 2.0) * t - (a + 3.0)) * t * t + 1.0
            t < 2.0 -> (((t - 5.0) * t + 8.0) * t - 4.0) * a
            else -> 0.0
        }
    }

    private fun bilinear(x: Double): Double = max(0.0, 1.0 - abs(x))

    /** Per output index: first source index, and fixed-point weights. */
    private class Coeffs(val start: IntArray, val weights: Array<IntArray>)

    private fun coeffs(inSize: Int, outSize: Int, filter: (Double) -> Double, support: Double): Coeffs {
        val scale = inSize.toDouble() / outSize
        val filterScale = max(scale, 1.0)
        val radius = support * filterScale
        val start = IntArray(outSize)
        val weights = Array(outSize) { IntArray(0) }
        for (i in 0 until outSize) {
            val center = (i + 0.5) * scale
            val xmin = max((center - radius + 0.5).toInt(), 0)
            val xmax = min((center + radius + 0.5).toInt(), inSize)
            val k = DoubleArray(xmax - xmin) { filter((it + xmin - center + 0.5) / filterScale) }
            val sum = k.sum()
            start[i] = xmin
            weights[i] = IntArray(k.size) {
                val w = if (sum != 0.0) k[it] / sum else 0.0
                // Pillow rounds half away from zero here
                (
                    if (w <
                        0
                    ) {
                        -floor(-w * (1 shl PRECISION_BITS) + 0.5)
                    } else {
                        floor(w * (1 shl PRECISION_BITS) + 0.5)
                    }
                    ).toInt()
            }
        }
        return Coeffs(start, weights)
    }

    private fun clip8(v: Long): Int = (v shr PRECISION_BITS).toInt().coerceIn(0, 255)

    /** One pass along rows (horizontal) or columns, on separate R, G, B planes. */
    private fun pass(
        src: Array<IntArray>,
        w: Int,
        h: Int,
        outW: Int,
        outH: Int,
        c: Coeffs,
        horizontal: Boolean
    ): Array<IntArray> {
        val out = Array(3) { IntArray(outW * outH) }
        val half = 1L shl (PRECISION_BITS - 1)
        for (ch in 0 until 3) {
            val s = src[ch]
            val o = out[ch]
            for (y in 0 until outH) {
                for (x in 0 until outW) {
                    var acc = half
                    if (horizontal) {
                        val k = c.weights[x]
                        val base = y * w + c.start[x]
                        for (j in k.indices) acc += s[base + j].toLong() * k[j]
                    } else {
                        val k = c.weights[y]
                        val y0 = c.start[y]
                        for (j in k.indices) acc += s[(y0 + j) * w + x].toLong() * k[j]
                    }
                    o[y * outW + x] = clip8(acc)
                }
            }
        }
        return out
    }

    /** `argb` (row-major 0xAARRGGBB, `w` x `h`) resized to `outW` x `outH` with `interpolation`. */
    fun resize(argb: IntArray, w: Int, h: Int, outW: Int, outH: Int, interpolation: String): IntArray {
        require(argb.size == w * h) { "pixel count ${argb.size} != $w x $h" }
        if (w == outW && h == outH) return argb.copyOf()
        var planes = Array(3) { ch -> IntArray(w * h) { (argb[it] shr (16 - 8 * ch)) and 0xff } }
        if (interpolation == "nearest") {
            val out = IntArray(outW * outH)
            for (y in 0 until outH) {
                val sy = min(((y + 0.5) * h / outH).toInt(), h - 1)
                for (x in 0 until outW) {
                    val sx = min(((x + 0.5) * w / outW).toInt(), w - 1)
                    out[y * outW + x] = argb[sy * w + sx]
                }
            }
            return out
        }
        val (filter, support) = when (interpolation) {
            "bicubic" -> Pair(::bicubic, 2.0)

            "bilinear" -> Pair(::bilinear, 1.0)

            else -> throw IllegalArgumentException(
                "unknown interpolation '$interpolation' (bicubic, bilinear, nearest)"
            )
        }
        var cw = w
        if (outW != w) {
            planes = pass(planes, w, h, outW, h, coeffs(w, outW, filter, support), horizontal = true)
            cw = outW
        }
        if (outH != h) {
            planes = pass(planes, cw, h, cw, outH, coeffs(h, outH, filter, support), horizontal = false)
        }
        return IntArray(outW * outH) {
            (0xff shl 24) or (planes[0][it] shl 16) or (planes[1][it] shl 8) or planes[2][it]
        }
    }
}

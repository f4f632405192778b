package dev.edgevit.demo.core

/** NV21 camera frames (Android's default preview format) to ARGB pixels, full-range BT.601. */
object Yuv {
    fun nv21ToArgb(nv21: ByteArray, width: Int, height: Int): IntArray {
        require(nv21.size >= width * height * 3 / 2) { "NV21 buffer too small for $width x $height" }
        val out = IntArray(width * height)
        val frame = width * height
        for (y in 0 until height) {
            for (x in 0 until width) {
                val yy = (nv21[y * width + x].toInt() and 0xff).toFloat()
                val uvIndex = frame + (y / 2) * width + (x and 1.inv())
                val v = (nv21[uvIndex].toInt() and 0xff) - 128f
                val u = (nv21[uvIndex + 1].toInt() and 0xff) - 128f
                val r = clamp(yy + 1.402f * v)
                val g = clamp(yy - 0.344136f * u - 0.714136f * v)
                val b = clamp(yy + 1.772f * u)
                out[y * width + x] = (0xff shl 24) or (r shl 16) or (g shl 8) or b
            }
        }
        return out
    }

    private fun clamp(v: Float): Int = v.toInt().coerceIn(0, 255)
}

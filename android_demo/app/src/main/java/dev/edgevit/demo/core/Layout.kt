package dev.edgevit.demo.core

/** Tensor layouts an artifact can take (manifest input.layout). The preprocessor always makes NCHW. */
object Layout {
    /** One NCHW image ([c, h, w] planes) as NHWC (interleaved channels), what a `--layout nhwc` artifact takes. */
    fun nchwToNhwc(x: FloatArray, channels: Int, height: Int, width: Int): FloatArray {
        require(x.size == channels * height * width) { "${x.size} values are not $channels x $height x $width" }
        val out = FloatArray(x.size)
        val plane = height * width
        for (c in 0 until channels) {
            for (i in 0 until plane) out[i * channels + c] = x[c * plane + i]
        }
        return out
    }

    /** The preprocessor's NCHW input and its shape in the artifact's layout ("NCHW" or "NHWC"). */
    fun forArtifact(x: FloatArray, height: Int, width: Int, layout: String): Pair<FloatArray, LongArray> =
        when (layout) {
            "NCHW" -> Pair(x, longArrayOf(1, 3, height.toLong(), width.toLong()))
            "NHWC" -> Pair(nchwToNhwc(x, 3, height, width), longArrayOf(1, height.toLong(), width.toLong(), 3))
            else -> throw IllegalArgumentException("input layout $layout is not NCHW or NHWC")
        }
}

package dev.edgevit.demo.core

/**
 * The manifest's preprocessing, in plain Kotlin: the picture is first resized with the manifest's interpolation
 * (`Resize`, Pillow's algorithm, so bicubic means the same as on the Python side) so it covers `resize`, then
 * center-cropped to `size`, then each channel becomes (v / 255 - mean) / std, in NCHW order.
 */
class Preprocessor(private val spec: PreprocessSpec, private val rawPixels: Boolean) {
    val height = spec.size[0]
    val width = spec.size[1]

    /**
     * Size (width, height) to scale a `srcWidth` x `srcHeight` picture to before cropping: the manifest's
     * `geometry`, as edgevit's Python preprocessing computes it. "timm-eval" is timm's eval transform: a square
     * `resize` S gives the shorter side S and the longer side `S * long / short` truncated (torchvision's
     * `Resize(int)`); a non-square one scales by `min(h / th, w / tw)` and rounds each side, halves to even (timm's
     * `ResizeKeepRatio`). "edgevit-v1" (older manifests) is the smallest size covering `resize`, both sides rounded.
     */
    fun scaledSize(srcWidth: Int, srcHeight: Int): Pair<Int, Int> {
        val th = spec.resize[0]
        val tw = spec.resize[1]
        if (spec.geometry == "edgevit-v1") {
            val scale = maxOf(th.toDouble() / srcHeight, tw.toDouble() / srcWidth)
            val w = maxOf(tw, Math.round(srcWidth * scale).toInt())
            return Pair(w, maxOf(th, Math.round(srcHeight * scale).toInt()))
        }
        if (th == tw) {
            return if (srcWidth <= srcHeight) {
                Pair(th, (th.toDouble() * srcHeight / srcWidth).toInt())
            } else {
                Pair((th.toDouble() * srcWidth / srcHeight).toInt(), th)
            }
        }
        val ratio = minOf(srcHeight.toDouble() / th, srcWidth.toDouble() / tw)
        return Pair(Math.rint(srcWidth / ratio).toInt(), Math.rint(srcHeight / ratio).toInt())
    }

    /** Any picture (`argb`, `srcWidth` x `srcHeight`) -> the model input: resize, crop, normalise. */
    fun prepare(argb: IntArray, srcWidth: Int, srcHeight: Int): FloatArray {
        val (w, h) = scaledSize(srcWidth, srcHeight)
        return toTensor(Resize.resize(argb, srcWidth, srcHeight, w, h, spec.interpolation), w, h)
    }

    /** Left and top of the center crop inside a scaled picture (torchvision's `center_crop` offsets for "timm-eval":
     *  half the slack, halves to even). */
    fun cropOrigin(scaledWidth: Int, scaledHeight: Int): Pair<Int, Int> {
        if (spec.geometry == "edgevit-v1") {
            return Pair((scaledWidth - width) / 2, (scaledHeight - height) / 2)
        }
        return Pair(Math.rint((scaledWidth - width) / 2.0).toInt(), Math.rint((scaledHeight - height) / 2.0).toInt())
    }

    /**
     * `argb`: a scaled picture's pixels, row-major, 0xAARRGGBB (Android's Bitmap.getPixels layout).
     * Returns the model input (3 x height x width), normalized, or raw 0-255 values for image-input artifacts.
     */
    fun toTensor(argb: IntArray, scaledWidth: Int, scaledHeight: Int): FloatArray {
        require(argb.size == scaledWidth * scaledHeight) { "pixel count ${argb.size} != $scaledWidth x $scaledHeight" }
        require(scaledWidth >= width && scaledHeight >= height) { "picture smaller than the crop" }
        val (left, top) = cropOrigin(scaledWidth, scaledHeight)
        val out = FloatArray(3 * height * width)
        val plane = height * width
        for (y in 0 until height) {
            for (x in 0 until width) {
                val p = argb[(top + y) * scaledWidth + left + x]
                val rgb = intArrayOf((p shr 16) and 0xff, (p shr 8) and 0xff, p and 0xff)
                for (c in 0 until 3) {
                    val v = rgb[c].toFloat()
                    out[c * plane + y * width + x] = if (rawPixels) v else (v / 255f - spec.mean[c]) / spec.std[c]
                }
            }
        }
        return out
    }
}

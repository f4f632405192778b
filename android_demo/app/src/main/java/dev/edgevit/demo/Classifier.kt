package dev.edgevit.demo

import android.graphics.Bitmap
import dev.edgevit.demo.core.Manifest
import dev.edgevit.demo.core.Preprocessor
import dev.edgevit.demo.core.TopK
import dev.edgevit.demo.engine.InferenceEngine

/** Bitmap -> manifest preprocessing -> engine -> top-5 labels. */
class Classifier(private val manifest: Manifest, private val engine: InferenceEngine) {
    private val pre = Preprocessor(manifest.preprocess, manifest.takesRawPixels)

    fun classify(bitmap: Bitmap): List<TopK.Entry> {
        val (w, h) = pre.scaledSize(bitmap.width, bitmap.height)
        val scaled = Bitmap.createScaledBitmap(bitmap, w, h, true)
        val pixels = IntArray(w * h)
        scaled.getPixels(pixels, 0, w, 0, 0, w, h)
        return classifyPixels(pixels, w, h)
    }

    fun classifyPixels(argb: IntArray, width: Int, height: Int): List<TopK.Entry> {
        val input = pre.toTensor(argb, width, height)
        val shape = longArrayOf(1, 3, pre.height.toLong(), pre.width.toLong())
        val scores = engine.run(input, shape).first()
        val probs = if (manifest.outputs.first().name == "probabilities") scores else TopK.softmax(scores)
        return TopK.topK(probs, 5, manifest.labels)
    }
}

package dev.edgevit.demo

import android.graphics.Bitmap
import dev.edgevit.demo.core.Layout
import dev.edgevit.demo.core.Manifest
import dev.edgevit.demo.core.Preprocessor
import dev.edgevit.demo.core.TopK
import dev.edgevit.demo.engine.InferenceEngine

/** Bitmap -> manifest preprocessing -> engine -> top-5 labels. */
class Classifier(private val manifest: Manifest, private val engine: InferenceEngine) {
    private val pre = Preprocessor(manifest.preprocess, manifest.takesRawPixels)

    fun classify(bitmap: Bitmap): List<TopK.Entry> {
        val pixels = IntArray(bitmap.width * bitmap.height)
        bitmap.getPixels(pixels, 0, bitmap.width, 0, 0, bitmap.width, bitmap.height)
        return classifyPixels(pixels, bitmap.width, bitmap.height)
    }

    /** Any picture: resized with the manifest's interpolation (Pillow's algorithm, not createScaledBitmap). */
    fun classifyPixels(argb: IntArray, width: Int, height: Int): List<TopK.Entry> {
        val nchw = pre.prepare(argb, width, height)
        val (input, shape) = Layout.forArtifact(nchw, pre.height, pre.width, manifest.inputLayout)
        val scores = engine.run(input, shape).first()
        val probs = if (manifest.outputs.first().name == "probabilities") scores else TopK.softmax(scores)
        return TopK.topK(probs, 5, manifest.labels)
    }
}

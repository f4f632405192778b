package dev.edgevit.demo.core

/** Top-k classes of a score vector, with labels from the manifest when it has them. */
object TopK {
    data class Entry(val index: Int, val label: String, val score: Float)

    fun argmax(scores: FloatArray): Int {
        var best = 0
        for (i in 1 until scores.size) if (scores[i] > scores[best]) best = i
        return best
    }

    fun topK(scores: FloatArray, k: Int, labels: List<String>?): List<Entry> =
        scores.indices.sortedWith(compareByDescending<Int> { scores[it] }.thenBy { it })
            .take(minOf(k, scores.size))
            .map { Entry(it, labels?.getOrNull(it) ?: "class $it", scores[it]) }

    /** Softmax for display, numerically stable. */
    fun softmax(scores: FloatArray): FloatArray {
        val m = scores.maxOrNull() ?: return scores
        val e = scores.map { kotlin.math.exp((it - m).toDouble()) }
        val s = e.sum()
        return FloatArray(scores.size) { (e[it] / s).toFloat() }
    }
}

package dev.edgevit.demo.core

/** The order of a LiteRT signature's outputs: the manifest's, as edgevit's Python runner reads them. */
object SignatureOrder {
    /** output_0, output_1, ..., output_10 in numeric order (a plain sort puts output_10 before output_2). */
    fun outputs(keys: List<String>): List<String> =
        keys.sortedBy { it.substringAfterLast('_').toIntOrNull() ?: Int.MAX_VALUE }
}

package dev.edgevit.demo.core

/** The parts of an edgevit artifact folder's manifest.json the app uses (keys as written by `edgevit convert`). */
data class TensorSpec(val name: String, val shape: List<Int>)

data class GoldenFile(val name: String, val file: String, val shape: List<Int>)

/** A picture that needs resizing and the input Python made of it (golden/resize_source.png, resize_input.bin). */
data class ResizeCheck(val image: String, val input: GoldenFile)

/** The oldest runtime that can load the artifact (manifest `runtime_requirements`). */
data class RuntimeRequirement(val runtime: String, val minVersion: String, val why: String)

data class PreprocessSpec(
    val size: List<Int>,
    val mean: List<Float>,
    val std: List<Float>,
    val resize: List<Int>,
    val cropPct: Double,
    val interpolation: String,
    val color: String,
    /** The resize/crop rule (edgevit.preprocess.GEOMETRIES); manifests without the key used "edgevit-v1". */
    val geometry: String = "edgevit-v1"
)

data class Manifest(
    val formatVersion: Int,
    val model: String,
    val target: String,
    val precision: String,
    val artifact: String,
    val artifactSha256: String,
    val input: TensorSpec,
    val inputPixels: String,
    val inputLayout: String,
    val preprocess: PreprocessSpec,
    val outputs: List<TensorSpec>,
    val labels: List<String>?,
    val goldenImage: String,
    val goldenInput: GoldenFile,
    val goldenOutputs: List<GoldenFile>,
    val resizeCheck: ResizeCheck?,
    val runtimeRequirement: RuntimeRequirement?
) {
    /** True when the artifact takes raw 0-255 RGB pixels (normalisation inside the model, CoreML image input). */
    val takesRawPixels: Boolean get() = inputPixels == "raw_rgb_0_255"

    companion object {
        const val MAX_FORMAT_VERSION = 1

        @Suppress("UNCHECKED_CAST")
        fun parse(text: String): Manifest {
            val m =
                Json.parse(text) as? Map<String, Any?> ?: throw IllegalArgumentException("manifest is not an object")

            fun obj(map: Map<String, Any?>, key: String) =
                map[key] as? Map<String, Any?> ?: throw IllegalArgumentException("manifest lacks object '$key'")

            fun str(map: Map<String, Any?>, key: String) =
                map[key] as? String ?: throw IllegalArgumentException("manifest lacks string '$key'")

            fun ints(v: Any?) = (v as List<Any?>).map { (it as? Number)?.toInt() ?: 1 } // "batch" -> 1

            fun floats(v: Any?) = (v as List<Any?>).map { (it as Number).toFloat() }

            fun golden(g: Map<String, Any?>) = GoldenFile(
                g["name"] as? String ?: "input",
                str(g, "file"),
                ints(g["shape"])
            )

            val version =
                (m["format_version"] as? Number)?.toInt() ?: throw IllegalArgumentException("no format_version")
            require(version <= MAX_FORMAT_VERSION) { "manifest format $version is newer than this app reads" }
            val input = obj(m, "input")
            val pre = obj(m, "preprocess")
            val gold = obj(m, "golden")
            return Manifest(
                formatVersion = version,
                model = str(m, "model"),
                target = str(m, "target"),
                precision = str(m, "precision"),
                artifact = str(m, "artifact"),
                artifactSha256 = str(m, "artifact_sha256"),
                input = TensorSpec(str(input, "name"), ints(input["shape"])),
                inputPixels = input["pixels"] as? String ?: "normalized",
                inputLayout = input["layout"] as? String ?: "NCHW",
                preprocess = PreprocessSpec(
                    size = ints(pre["size"]),
                    mean = floats(pre["mean"]),
                    std = floats(pre["std"]),
                    resize = ints(pre["resize"]),
                    cropPct = (pre["crop_pct"] as Number).toDouble(),
                    interpolation = str(pre, "interpolation"),
                    color = str(pre, "color"),
                    geometry = pre["geometry"] as? String ?: "edgevit-v1"
                ),
                outputs = (m["outputs"] as List<Map<String, Any?>>).map {
                    TensorSpec(str(it, "name"), ints(it["shape"]))
                },
                labels = (m["labels"] as? List<Any?>)?.map { it.toString() },
                goldenImage = str(gold, "image"),
                goldenInput = golden(obj(gold, "input")),
                goldenOutputs = (gold["outputs"] as List<Map<String, Any?>>).map { golden(it) },
                resizeCheck = (gold["resize_check"] as? Map<String, Any?>)?.let {
                    ResizeCheck(str(it, "image"), golden(obj(it, "input")))
                },
                runtimeRequirement = (m["runtime_requirements"] as? Map<String, Any?>)?.takeIf {
                    it.isNotEmpty()
                }?.let {
                    RuntimeRequirement(str(it, "runtime"), str(it, "min_version"), it["why"] as? String ?: "")
                }
            )
        }
    }
}

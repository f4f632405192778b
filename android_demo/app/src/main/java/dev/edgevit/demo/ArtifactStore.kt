package dev.edgevit.demo

import dev.edgevit.demo.core.Golden
import dev.edgevit.demo.core.Manifest
import java.io.File

/** Artifact folders the app knows: copied under filesDir/models/<name>/ (see README) or pushed with adb. */
object ArtifactStore {
    fun list(root: File): List<File> =
        root.listFiles()?.filter { File(it, "manifest.json").isFile }?.sortedBy { it.name } ?: emptyList()

    fun manifest(folder: File): Manifest = Manifest.parse(File(folder, "manifest.json").readText())

    fun goldenInput(folder: File, manifest: Manifest): FloatArray =
        Golden.readFloats(File(folder, manifest.goldenInput.file).readBytes())

    fun goldenOutputs(folder: File, manifest: Manifest): List<FloatArray> =
        manifest.goldenOutputs.map { Golden.readFloats(File(folder, it.file).readBytes()) }
}

package dev.edgevit.demo

import android.app.Activity
import android.content.Intent
import android.graphics.BitmapFactory
import android.os.Bundle
import android.widget.Button
import android.widget.ImageView
import android.widget.TextView
import dev.edgevit.demo.core.Manifest
import dev.edgevit.demo.engine.InferenceEngine
import java.io.File

/** Pick an artifact folder, check it against its golden pair, classify photos, open the camera or benchmark. */
class MainActivity : Activity() {
    private var folder: File? = null
    private var manifest: Manifest? = null
    private var engine: InferenceEngine? = null
    private lateinit var status: TextView
    private lateinit var result: TextView
    private lateinit var preview: ImageView

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        setContentView(R.layout.activity_main)
        status = findViewById(R.id.status)
        result = findViewById(R.id.result)
        preview = findViewById(R.id.preview)
        findViewById<Button>(R.id.pick_photo).setOnClickListener {
            val pick = Intent(Intent.ACTION_GET_CONTENT).setType("image/*")
            startActivityForResult(pick, REQUEST_PHOTO)
        }
        findViewById<Button>(R.id.open_camera).setOnClickListener {
            folder?.let { startActivity(Intent(this, CameraActivity::class.java).putExtra(EXTRA_MODEL_DIR, it.path)) }
        }
        findViewById<Button>(R.id.open_benchmark).setOnClickListener {
            folder?.let {
                startActivity(Intent(this, BenchmarkActivity::class.java).putExtra(EXTRA_MODEL_DIR, it.path))
            }
        }
        openFirstArtifact()
    }

    private fun openFirstArtifact() {
        val models = File(filesDir, "models")
        val found = ArtifactStore.list(models).firstOrNull()
        if (found == null) {
            status.text = getString(R.string.no_models, models.path)
            return
        }
        try {
            val m = ArtifactStore.manifest(found)
            val e = InferenceEngine.open(found, m, DEFAULT_THREADS)
            folder = found
            manifest = m
            engine = e
            // first launch: the artifact must reproduce PyTorch's outputs on the golden input
            val check = SelfCheck.run(found, m, e)
            status.text = "${m.model} ${m.target}/${m.precision}: ${check.message}"
        } catch (t: Exception) {
            status.text = getString(R.string.load_failed, found.name, t.message ?: t.toString())
        }
    }

    @Deprecated("framework callback")
    override fun onActivityResult(requestCode: Int, resultCode: Int, data: Intent?) {
        super.onActivityResult(requestCode, resultCode, data)
        val uri = data?.data ?: return
        if (requestCode != REQUEST_PHOTO || resultCode != RESULT_OK) return
        val m = manifest ?: return
        val e = engine ?: return
        val bitmap = contentResolver.openInputStream(uri)?.use { BitmapFactory.decodeStream(it) } ?: return
        preview.setImageBitmap(bitmap)
        val top = Classifier(m, e).classify(bitmap)
        result.text = top.joinToString("\n") { "%s  %.1f%%".format(it.label, 100 * it.score) }
    }

    override fun onDestroy() {
        engine?.close()
        super.onDestroy()
    }

    companion object {
        const val REQUEST_PHOTO = 1
        const val EXTRA_MODEL_DIR = "model_dir"
        const val DEFAULT_THREADS = 4
    }
}

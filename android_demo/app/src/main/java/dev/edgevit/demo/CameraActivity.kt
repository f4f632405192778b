package dev.edgevit.demo

import android.app.Activity
import android.graphics.SurfaceTexture
import android.hardware.Camera
import android.os.Bundle
import android.view.TextureView
import android.widget.TextView
import dev.edgevit.demo.core.Yuv
import dev.edgevit.demo.engine.InferenceEngine
import java.io.File

/** Live classification of the camera feed: NV21 preview frames -> ARGB -> the same Classifier as photos. */
@Suppress("DEPRECATION") // android.hardware.Camera: the smallest API that delivers preview frames
class CameraActivity :
    Activity(),
    TextureView.SurfaceTextureListener {
    private var camera: Camera? = null
    private lateinit var classifier: Classifier
    private lateinit var engine: InferenceEngine
    private lateinit var label: TextView
    private var busy = false

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        setContentView(R.layout.activity_camera)
        label = findViewById(R.id.camera_result)
        val folder = File(intent.getStringExtra(MainActivity.EXTRA_MODEL_DIR) ?: return finish())
        val manifest = ArtifactStore.manifest(folder)
        engine = InferenceEngine.open(folder, manifest, MainActivity.DEFAULT_THREADS)
        classifier = Classifier(manifest, engine)
        findViewById<TextureView>(R.id.camera_preview).surfaceTextureListener = this
    }

    override fun onSurfaceTextureAvailable(surface: SurfaceTexture, width: Int, height: Int) {
        val cam = Camera.open()
        camera = cam
        cam.setPreviewTexture(surface)
        val size = cam.parameters.previewSize
        cam.setPreviewCallback { data, _ ->
            if (!busy) {
                busy = true
                val argb = Yuv.nv21ToArgb(data, size.width, size.height)
                val top = classifier.classifyPixels(argb, size.width, size.height).first()
                label.text = "%s  %.1f%%".format(top.label, 100 * top.score)
                busy = false
            }
        }
        cam.startPreview()
    }

    override fun onSurfaceTextureSizeChanged(surface: SurfaceTexture, width: Int, height: Int) = Unit

    override fun onSurfaceTextureDestroyed(surface: SurfaceTexture): Boolean {
        camera?.setPreviewCallback(null)
        camera?.stopPreview()
        camera?.release()
        camera = null
        return true
    }

    override fun onSurfaceTextureUpdated(surface: SurfaceTexture) = Unit

    override fun onDestroy() {
        engine.close()
        super.onDestroy()
    }
}

package android.hardware;

public class Camera {
    Camera() { }
    public static Camera open() { throw new RuntimeException("stub"); }
    public final void setPreviewTexture(android.graphics.SurfaceTexture surfaceTexture) throws java.io.IOException {
        throw new RuntimeException("stub");
    }
    public Parameters getParameters() { throw new RuntimeException("stub"); }
    public final void setPreviewCallback(PreviewCallback cb) { throw new RuntimeException("stub"); }
    public final void startPreview() { throw new RuntimeException("stub"); }
    public final void stopPreview() { throw new RuntimeException("stub"); }
    public final void release() { throw new RuntimeException("stub"); }

    public interface PreviewCallback {
        void onPreviewFrame(byte[] data, Camera camera);
    }

    public class Parameters {
        private Parameters() { }
        public Size getPreviewSize() { throw new RuntimeException("stub"); }
    }

    public class Size {
        private Size() { }
        public int width;
        public int height;
    }
}

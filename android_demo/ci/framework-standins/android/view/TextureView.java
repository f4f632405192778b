package android.view;

public class TextureView extends View {
    public TextureView(android.content.Context context) { super(context); }
    public void setSurfaceTextureListener(SurfaceTextureListener listener) { throw new RuntimeException("stub"); }
    public SurfaceTextureListener getSurfaceTextureListener() { throw new RuntimeException("stub"); }

    public interface SurfaceTextureListener {
        void onSurfaceTextureAvailable(android.graphics.SurfaceTexture surface, int width, int height);
        void onSurfaceTextureSizeChanged(android.graphics.SurfaceTexture surface, int width, int height);
        boolean onSurfaceTextureDestroyed(android.graphics.SurfaceTexture surface);
        void onSurfaceTextureUpdated(android.graphics.SurfaceTexture surface);
    }
}

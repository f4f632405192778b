package android.graphics;

public class BitmapFactory {
    public BitmapFactory() { throw new RuntimeException("stub"); }
    public static Bitmap decodeStream(java.io.InputStream is) { throw new RuntimeException("stub"); }
}

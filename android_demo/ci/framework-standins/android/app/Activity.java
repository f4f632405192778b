package android.app;

import android.content.Intent;

public class Activity extends android.content.Context {
    public static final int RESULT_OK = -1;
    protected void onCreate(android.os.Bundle savedInstanceState) { throw new RuntimeException("stub"); }
    protected void onDestroy() { throw new RuntimeException("stub"); }
    protected void onActivityResult(int requestCode, int resultCode, Intent data) { throw new RuntimeException("stub"); }
    public void setContentView(int layoutResID) { throw new RuntimeException("stub"); }
    public <T extends android.view.View> T findViewById(int id) { throw new RuntimeException("stub"); }
    public Intent getIntent() { throw new RuntimeException("stub"); }
    public void startActivityForResult(Intent intent, int requestCode) { throw new RuntimeException("stub"); }
    public void startActivity(Intent intent) { throw new RuntimeException("stub"); }
    public void finish() { throw new RuntimeException("stub"); }
    public final void runOnUiThread(Runnable action) { throw new RuntimeException("stub"); }
    public java.io.File getFilesDir() { throw new RuntimeException("stub"); }
    public android.content.ContentResolver getContentResolver() { throw new RuntimeException("stub"); }
}

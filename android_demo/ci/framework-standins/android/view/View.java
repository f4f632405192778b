package android.view;

public class View {
    public View(android.content.Context context) { throw new RuntimeException("stub"); }
    public void setOnClickListener(OnClickListener l) { throw new RuntimeException("stub"); }

    public interface OnClickListener {
        void onClick(View v);
    }
}

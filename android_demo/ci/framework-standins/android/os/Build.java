package android.os;

public class Build {
    public Build() { throw new RuntimeException("stub"); }
    public static final String MODEL = null;
    public static final String SOC_MODEL = null;

    public static class VERSION {
        private VERSION() { }
        public static final String RELEASE = null;
    }
}

package android.os;

public final class SystemClock {
    private SystemClock() { }
    public static long elapsedRealtimeNanos() { throw new RuntimeException("stub"); }
}

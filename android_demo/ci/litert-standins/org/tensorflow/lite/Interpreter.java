package org.tensorflow.lite;

import java.io.File;
import java.util.Map;

public final class Interpreter implements AutoCloseable {
    public static class Options {
        public Options() { }
        public Options setNumThreads(int numThreads) { throw new RuntimeException("stub"); }
        public Options setUseXNNPACK(boolean useXNNPACK) { throw new RuntimeException("stub"); }
    }

    public Interpreter(File modelFile, Options options) { throw new RuntimeException("stub"); }
    public String[] getSignatureKeys() { throw new RuntimeException("stub"); }
    public String[] getSignatureInputs(String signatureKey) { throw new RuntimeException("stub"); }
    public String[] getSignatureOutputs(String signatureKey) { throw new RuntimeException("stub"); }
    public Tensor getInputTensorFromSignature(String inputName, String signatureKey) {
        throw new RuntimeException("stub");
    }
    public Tensor getOutputTensorFromSignature(String outputName, String signatureKey) {
        throw new RuntimeException("stub");
    }
    public void runSignature(Map<String, Object> inputs, Map<String, Object> outputs, String signatureKey) {
        throw new RuntimeException("stub");
    }
    @Override
    public void close() { throw new RuntimeException("stub"); }
}

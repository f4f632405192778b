package org.tensorflow.lite;

public interface Tensor {
    DataType dataType();
    int numElements();
    int[] shape();
}

package dev.edgevit.demo.engine

import java.io.File
import org.pytorch.executorch.EValue
import org.pytorch.executorch.Module
import org.pytorch.executorch.Tensor

/** ExecuTorch (.pte, XNNPACK delegate) through the ExecuTorch Android Java API. */
class ExecuTorchEngine(artifact: File, threads: Int) : InferenceEngine {
    private val module: Module = Module.load(artifact.absolutePath, LOAD_MODE_MMAP, threads)
    override val runtime = "executorch"
    override val computeUnits = "xnnpack"

    override fun run(input: FloatArray, shape: LongArray): List<FloatArray> {
        val outputs = module.forward(EValue.from(Tensor.fromBlob(input, shape)))
        return outputs.map { it.toTensor().getDataAsFloatArray() }
    }

    override fun close() {
        module.destroy()
    }

    private companion object {
        const val LOAD_MODE_MMAP = 1
    }
}

import ExecuTorch
import Foundation

/// ExecuTorch `.pte` (XNNPACK or CoreML delegate) through ExecuTorch's Swift API.
final class ExecuTorchEngine: InferenceEngine {
    private let module: Module
    let runtime = "executorch"
    let computeUnitsName = "xnnpack"

    init(program: URL) throws {
        module = Module(filePath: program.path)
        try module.load("forward")
    }

    func run(_ input: [Float], shape: [Int]) throws -> [[Float]] {
        let tensor = Tensor<Float>(input, shape: shape)
        let outputs = try module.forward(tensor)
        return try outputs.map { value in
            guard let t: Tensor<Float> = value.tensor() else {
                throw DemoError.unsupported("an ExecuTorch output is not a float tensor")
            }
            return t.scalars()
        }
    }
}

import Foundation
#if canImport(CoreAI)
import CoreAI
#endif

/// Core AI `.aimodel` (iOS 27+): the asset's `main` function on float32 NCHW input holding raw 0-255 RGB (the
/// checkpoint's mean/std are the model's first operation, `manifest.input.pixels == "raw_rgb_0_255"`); float32 outputs
/// in manifest order whatever the precision. Core AI's API is async; `InferenceEngine.run` is called off the main
/// thread (golden check, benchmark, classification), so it waits for the result there.
#if canImport(CoreAI)
@available(iOS 27.0, *)
final class CoreAIEngine: InferenceEngine {
    private let function: InferenceFunction
    private let manifest: Manifest
    let runtime = "coreai"
    /// Core AI chooses CPU, GPU or Neural Engine when it specializes the asset for this device.
    let computeUnitsName = "all"

    init(asset: URL, manifest: Manifest) throws {
        self.manifest = manifest
        let loaded: InferenceFunction? = try Blocking.wait {
            let model = try await AIModel(contentsOf: asset)
            return try model.loadFunction(named: "main")
        }
        guard let function = loaded else {
            throw DemoError.unsupported("\(asset.lastPathComponent) has no function named main")
        }
        self.function = function
    }

    func run(_ input: [Float], shape: [Int]) throws -> [[Float]] {
        let array = NDArray(scalars: input, shape: shape)
        let name = manifest.input.name
        let fn = function
        var outputs = try Blocking.wait { try await fn.run(inputs: [name: array]) }
        return try manifest.outputs.map { output in
            guard let value = outputs.remove(output.name), let nd = value.ndArray else {
                throw DemoError.unsupported("the asset returned no output \(output.name)")
            }
            return Self.floats(nd)
        }
    }

    /// The array's float32 scalars in row-major order, read through its strides.
    static func floats(_ array: NDArray) -> [Float] {
        array.rawView().withUnsafeBytes { base, shape, strides in
            let dims = (0..<shape.count).map { shape[$0] }
            let steps = (0..<strides.count).map { strides[$0] }
            let count = dims.reduce(1, *)
            let p = base.assumingMemoryBound(to: Float.self)
            var out = [Float](repeating: 0, count: count)
            var index = [Int](repeating: 0, count: dims.count)
            for i in 0..<count {
                var offset = 0
                for d in 0..<dims.count { offset += index[d] * steps[d] }
                out[i] = p[offset]
                var d = dims.count - 1
                while d >= 0 {
                    index[d] += 1
                    if index[d] < dims[d] { break }
                    index[d] = 0
                    d -= 1
                }
            }
            return out
        }
    }
}
#endif

/// Runs an async call to completion from synchronous code that is not on the main thread.
enum Blocking {
    private final class Box<T>: @unchecked Sendable {
        var result: Result<T, Error>?
    }

    static func wait<T>(_ body: @escaping @Sendable () async throws -> T) throws -> T {
        let box = Box<T>()
        let done = DispatchSemaphore(value: 0)
        Task.detached {
            do { box.result = .success(try await body()) } catch { box.result = .failure(error) }
            done.signal()
        }
        done.wait()
        return try box.result!.get()
    }
}

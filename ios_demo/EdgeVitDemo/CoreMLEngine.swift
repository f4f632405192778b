import CoreML
import Foundation

/// CoreML `.mlpackage` (compiled on device at first load). Image-input models take a pixel buffer of raw RGB.
final class CoreMLEngine: InferenceEngine {
    private let model: MLModel
    private let manifest: Manifest
    let runtime = "coreml"
    let computeUnitsName: String

    init(package: URL, manifest: Manifest, units: ComputeUnitsChoice) throws {
        let config = MLModelConfiguration()
        switch units {
        case .cpuOnly: config.computeUnits = .cpuOnly
        case .cpuAndGPU: config.computeUnits = .cpuAndGPU
        case .all: config.computeUnits = .all
        }
        let compiled = try MLModel.compileModel(at: package)
        model = try MLModel(contentsOf: compiled, configuration: config)
        self.manifest = manifest
        computeUnitsName = units.rawValue
    }

    func run(_ input: [Float], shape: [Int]) throws -> [[Float]] {
        let feature: MLFeatureValue
        if manifest.takesRawPixels {
            feature = MLFeatureValue(pixelBuffer: try PixelBuffers.rgb(fromPlanar: input, width: shape[3],
                                                                      height: shape[2]))
        } else {
            let array = try MLMultiArray(shape: shape.map { NSNumber(value: $0) }, dataType: .float32)
            for (i, v) in input.enumerated() { array[i] = NSNumber(value: v) }
            feature = MLFeatureValue(multiArray: array)
        }
        let provider = try MLDictionaryFeatureProvider(dictionary: [manifest.input.name: feature])
        let result = try model.prediction(from: provider)
        return manifest.outputs.map { output in
            if output.name == "probabilities", let dict = result.featureValue(for: "probabilities")?.dictionaryValue {
                return (manifest.labels ?? []).map { Float(truncating: dict[$0] ?? 0) }
            }
            guard let array = result.featureValue(for: output.name)?.multiArrayValue else { return [] }
            return (0..<array.count).map { Float(truncating: array[$0]) }
        }
    }
}

enum PixelBuffers {
    /// Planar RGB floats (3 x H x W, 0-255) -> a 32BGRA pixel buffer for an image-input CoreML model.
    static func rgb(fromPlanar input: [Float], width: Int, height: Int) throws -> CVPixelBuffer {
        var buffer: CVPixelBuffer?
        CVPixelBufferCreate(nil, width, height, kCVPixelFormatType_32BGRA, nil, &buffer)
        guard let pb = buffer else { throw DemoError.unsupported("cannot allocate a pixel buffer") }
        CVPixelBufferLockBaseAddress(pb, [])
        defer { CVPixelBufferUnlockBaseAddress(pb, []) }
        let base = CVPixelBufferGetBaseAddress(pb)!.assumingMemoryBound(to: UInt8.self)
        let stride = CVPixelBufferGetBytesPerRow(pb)
        let plane = width * height
        for y in 0..<height {
            for x in 0..<width {
                let i = y * width + x
                let p = base + y * stride + x * 4
                p[0] = UInt8(input[2 * plane + i])  // B
                p[1] = UInt8(input[plane + i])      // G
                p[2] = UInt8(input[i])              // R
                p[3] = 255
            }
        }
        return pb
    }
}

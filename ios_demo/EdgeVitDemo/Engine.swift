import Foundation

/// One engine protocol, one implementation per runtime.
protocol InferenceEngine {
    var runtime: String { get }
    var computeUnitsName: String { get }
    /// Runs one NCHW float input (normalized, or raw pixels for image-input CoreML); outputs in manifest order.
    func run(_ input: [Float], shape: [Int]) throws -> [[Float]]
}

enum ComputeUnitsChoice: String, CaseIterable, Identifiable {
    case cpuOnly = "cpu_only"
    case cpuAndGPU = "cpu_and_gpu"
    case all = "all"
    var id: String { rawValue }
}

enum Engines {
    /// The engine for an artifact folder, chosen by the manifest's target.
    static func open(folder: URL, manifest: Manifest, units: ComputeUnitsChoice) throws -> InferenceEngine {
        let artifact = folder.appendingPathComponent(manifest.artifact)
        guard FileManager.default.fileExists(atPath: artifact.path) else {
            throw DemoError.missing("artifact \(manifest.artifact) named in the manifest is missing")
        }
        let os = ProcessInfo.processInfo.operatingSystemVersion
        try RuntimeVersions.requireSupported(manifest, iosVersion: "\(os.majorVersion).\(os.minorVersion)")
        switch manifest.target {
        case "coreml": return try CoreMLEngine(package: artifact, manifest: manifest, units: units)
        case "executorch": return try ExecuTorchEngine(program: artifact)
        default: throw DemoError.unsupported("target \(manifest.target) does not run on iOS; use coreml or executorch")
        }
    }
}

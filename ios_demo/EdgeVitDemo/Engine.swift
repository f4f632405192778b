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
        case "coreai":
            #if canImport(CoreAI)
            if #available(iOS 27.0, *) { return try CoreAIEngine(asset: artifact, manifest: manifest) }
            #endif
            throw DemoError.unsupported("Core AI (.aimodel) needs iOS 27 and an app built with its SDK; load the "
                + "same model's coreml folder on this device")
        case "coreml": return try CoreMLEngine(package: artifact, manifest: manifest, units: units)
        case "executorch": return try ExecuTorchEngine(program: artifact)
        default: throw DemoError.unsupported("target \(manifest.target) does not run on iOS; use coreai, coreml or "
            + "executorch")
        }
    }

    /// Apple's runtime for this system: Core AI on iOS 27+, Core ML before it (ExecuTorch otherwise).
    static func preferredTargets(iosMajor: Int) -> [String] {
        iosMajor >= 27 ? ["coreai", "coreml", "executorch"] : ["coreml", "executorch"]
    }

    /// Among artifact folders of one model, the one this device should run: the first of `preferredTargets`
    /// present, read from each folder's manifest (the folder's name says nothing).
    static func preferred(_ folders: [URL], iosMajor: Int) -> URL? {
        let targets = folders.compactMap { folder in (try? Manifest.load(folder: folder)).map { (folder, $0.target) } }
        for wanted in preferredTargets(iosMajor: iosMajor) {
            if let hit = targets.first(where: { $0.1 == wanted }) { return hit.0 }
        }
        return nil
    }
}

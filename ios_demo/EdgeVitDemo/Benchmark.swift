import Foundation
import UIKit

/// The results file of a benchmark run, per edgevit/bench/device_results.schema.json (version 1). Written to the
/// app's Documents (shared through the Files app) and read back by `edgevit profile ingest`.
struct DeviceResults: Encodable {
    struct App: Encodable {
        let name: String
        let version: String
        enum CodingKeys: String, CodingKey { case name = "name", version = "version" }
    }

    struct Device: Encodable {
        let model: String
        let os: String
        let osVersion: String
        let soc: String?
        enum CodingKeys: String, CodingKey { case model = "model", os = "os", osVersion = "os_version", soc = "soc" }
    }

    struct Artifact: Encodable {
        let name: String
        let model: String
        let target: String
        let precision: String
        let artifactSha256: String
        let sizeBytes: Int?
        let inputShape: [Int]
        enum CodingKeys: String, CodingKey {
            case name = "name", model = "model", target = "target", precision = "precision"
            case artifactSha256 = "artifact_sha256", sizeBytes = "size_bytes", inputShape = "input_shape"
        }
    }

    struct GoldenResult: Encodable {
        let passed: Bool
        let maxAbs: Double
        let maxRel: Double
        enum CodingKeys: String, CodingKey { case passed = "passed", maxAbs = "max_abs", maxRel = "max_rel" }
    }

    let schema = "edgevit.device-results"
    let version = 1
    let app: App
    let device: Device
    let runtime: String
    let runtimeVersion: String?
    let computeUnits: String
    let threads: Int?
    let batch: Int
    let artifact: Artifact
    let warmup: Int
    let loadMs: Double
    let firstRunMs: Double
    let latenciesMs: [Double]
    let peakMemoryMb: Double?
    let thermalState: String
    let goldenCheck: GoldenResult?
    let timestamp: String

    enum CodingKeys: String, CodingKey {
        case schema = "schema", version = "version", app = "app", device = "device", runtime = "runtime"
        case runtimeVersion = "runtime_version", computeUnits = "compute_units", threads = "threads", batch = "batch"
        case artifact = "artifact", warmup = "warmup", loadMs = "load_ms", firstRunMs = "first_run_ms"
        case latenciesMs = "latencies_ms", peakMemoryMb = "peak_memory_mb", thermalState = "thermal_state"
        case goldenCheck = "golden_check", timestamp = "timestamp"
    }
}

enum Thermal {
    static var current: String {
        switch ProcessInfo.processInfo.thermalState {
        case .nominal: return "nominal"
        case .fair: return "fair"
        case .serious: return "serious"
        case .critical: return "critical"
        @unknown default: return "unknown"
        }
    }
}

struct BenchmarkRunner {
    let folder: URL
    let manifest: Manifest
    let units: ComputeUnitsChoice

    /// Warm-up, then `runs` timed runs on the golden input; returns the results file it wrote.
    func run(warmup: Int, runs: Int) throws -> (URL, LatencyStats) {
        let t0 = DispatchTime.now()
        let engine = try Engines.open(folder: folder, manifest: manifest, units: units)
        let loadMs = ms(since: t0)
        let input = try GoldenCheck.floats(folder.appendingPathComponent(manifest.golden.input.file))
        let shape = manifest.golden.input.shape
        let t1 = DispatchTime.now()
        _ = try engine.run(input, shape: shape)
        let firstMs = ms(since: t1)
        for _ in 0..<warmup { _ = try engine.run(input, shape: shape) }
        var latencies: [Double] = []
        for _ in 0..<runs {
            let t = DispatchTime.now()
            _ = try engine.run(input, shape: shape)
            latencies.append(ms(since: t))
        }
        let check = try GoldenCheck.run(folder: folder, manifest: manifest, engine: engine)
        let size = (try? FileManager.default.attributesOfItem(atPath: folder.appendingPathComponent(manifest.artifact).path)[.size]) as? Int
        let results = DeviceResults(
            app: .init(name: "edgevit-ios-demo", version: "0.1.0"),
            device: .init(model: Device.modelIdentifier, os: "iOS", osVersion: UIDevice.current.systemVersion, soc: nil),
            runtime: engine.runtime, runtimeVersion: nil, computeUnits: engine.computeUnitsName, threads: nil,
            batch: shape.first ?? 1,
            artifact: .init(name: folder.lastPathComponent, model: manifest.model, target: manifest.target,
                            precision: manifest.precision, artifactSha256: manifest.artifactSha256, sizeBytes: size,
                            inputShape: shape),
            warmup: warmup, loadMs: loadMs, firstRunMs: firstMs, latenciesMs: latencies, peakMemoryMb: nil,
            thermalState: Thermal.current,
            goldenCheck: .init(passed: check.passed, maxAbs: check.maxAbs, maxRel: check.maxRel),
            timestamp: ISO8601DateFormatter().string(from: Date()))
        let docs = FileManager.default.urls(for: .documentDirectory, in: .userDomainMask)[0]
        let file = docs.appendingPathComponent("results-\(folder.lastPathComponent)-\(Int(Date().timeIntervalSince1970)).json")
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(results).write(to: file)
        return (file, LatencyStats(latencies))
    }

    private func ms(since t: DispatchTime) -> Double {
        Double(DispatchTime.now().uptimeNanoseconds - t.uptimeNanoseconds) / 1e6
    }
}

enum Device {
    /// Hardware identifier such as iPhone15,2.
    static var modelIdentifier: String {
        var info = utsname()
        uname(&info)
        return withUnsafeBytes(of: &info.machine) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
    }
}

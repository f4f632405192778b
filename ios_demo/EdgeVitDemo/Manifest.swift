import Foundation

/// The parts of an edgevit artifact folder's manifest.json the app uses. Keys are the ones `edgevit convert`
/// writes; `tests/apps/test_ios.py` checks every CodingKeys raw value against a real manifest.
struct Manifest: Decodable {
    struct Input: Decodable {
        let name: String
        let shape: [ShapeDim]
        let pixels: String

        enum CodingKeys: String, CodingKey {
            case name = "name"
            case shape = "shape"
            case pixels = "pixels"
        }
    }

    struct Preprocess: Decodable {
        let size: [Int]
        let mean: [Float]
        let std: [Float]
        let resize: [Int]
        let cropPct: Double
        let interpolation: String
        let color: String
        /// The resize/crop rule (edgevit.preprocess.GEOMETRIES); nil in manifests written before it was recorded,
        /// which used "edgevit-v1".
        let geometry: String?

        enum CodingKeys: String, CodingKey {
            case size = "size"
            case mean = "mean"
            case std = "std"
            case resize = "resize"
            case cropPct = "crop_pct"
            case interpolation = "interpolation"
            case color = "color"
            case geometry = "geometry"
        }
    }

    struct Output: Decodable {
        let name: String
        let shape: [Int]

        enum CodingKeys: String, CodingKey {
            case name = "name"
            case shape = "shape"
        }
    }

    struct GoldenFile: Decodable {
        let file: String
        let shape: [Int]

        enum CodingKeys: String, CodingKey {
            case file = "file"
            case shape = "shape"
        }
    }

    struct ResizeCheck: Decodable {
        let image: String
        let input: GoldenFile

        enum CodingKeys: String, CodingKey {
            case image = "image"
            case input = "input"
        }
    }

    struct Golden: Decodable {
        let image: String
        let input: GoldenFile
        let outputs: [GoldenFile]
        let resizeCheck: ResizeCheck?

        enum CodingKeys: String, CodingKey {
            case image = "image"
            case input = "input"
            case outputs = "outputs"
            case resizeCheck = "resize_check"
        }
    }

    /// The oldest runtime (or iOS release, for CoreML) that can load the artifact.
    struct RuntimeRequirements: Decodable {
        let runtime: String
        let minVersion: String
        let why: String

        enum CodingKeys: String, CodingKey {
            case runtime = "runtime"
            case minVersion = "min_version"
            case why = "why"
        }
    }

    /// A dimension is an integer, or "batch" for a dynamic batch.
    enum ShapeDim: Decodable {
        case fixed(Int)
        case dynamic

        init(from decoder: Decoder) throws {
            let c = try decoder.singleValueContainer()
            if let v = try? c.decode(Int.self) { self = .fixed(v) } else { self = .dynamic }
        }

        var value: Int { if case .fixed(let v) = self { return v } else { return 1 } }
    }

    let formatVersion: Int
    let model: String
    let target: String
    let precision: String
    let artifact: String
    let artifactSha256: String
    let input: Input
    let preprocess: Preprocess
    let outputs: [Output]
    let labels: [String]?
    let golden: Golden
    let runtimeRequirements: RuntimeRequirements?

    enum CodingKeys: String, CodingKey {
        case formatVersion = "format_version"
        case model = "model"
        case target = "target"
        case precision = "precision"
        case artifact = "artifact"
        case artifactSha256 = "artifact_sha256"
        case input = "input"
        case preprocess = "preprocess"
        case outputs = "outputs"
        case labels = "labels"
        case golden = "golden"
        case runtimeRequirements = "runtime_requirements"
    }

    static let maxFormatVersion = 1

    /// True when the artifact takes raw 0-255 RGB pixels (CoreML image input, normalisation inside the model).
    var takesRawPixels: Bool { input.pixels == "raw_rgb_0_255" }

    static func load(folder: URL) throws -> Manifest {
        let data = try Data(contentsOf: folder.appendingPathComponent("manifest.json"))
        let manifest = try JSONDecoder().decode(Manifest.self, from: data)
        guard manifest.formatVersion <= maxFormatVersion else {
            throw DemoError.unsupported("manifest format \(manifest.formatVersion) is newer than this app reads")
        }
        return manifest
    }
}

enum DemoError: LocalizedError {
    case unsupported(String)
    case missing(String)

    var errorDescription: String? {
        switch self {
        case .unsupported(let s), .missing(let s): return s
        }
    }
}

import Foundation

/// First-launch check: replay golden/input.bin through the artifact and compare with PyTorch's outputs.
struct GoldenCheck {
    struct Outcome {
        let passed: Bool
        let maxAbs: Double
        let maxRel: Double
        let cosine: Double
        var summary: String {
            String(format: "golden check %@: max rel %.2e, cosine %.6f", passed ? "PASS" : "FAIL", maxRel, cosine)
        }
    }

    static func floats(_ url: URL) throws -> [Float] {
        let data = try Data(contentsOf: url)
        return data.withUnsafeBytes { raw in
            (0..<data.count / 4).map { Float(bitPattern: UInt32(littleEndian: raw.load(fromByteOffset: $0 * 4, as: UInt32.self))) }
        }
    }

    /// Limits by precision, mirroring edgevit's tolerance table for the golden input.
    static func limits(_ precision: String) -> (maxRel: Double, minCosine: Double) {
        switch precision {
        case "fp32": return (2e-4, 0.99999)
        case "fp16", "int8w", "pal8": return (5e-2, 0.995)
        default: return (0.3, 0.97)
        }
    }

    static func compare(_ reference: [Float], _ actual: [Float], precision: String) -> Outcome {
        var maxAbs = 0.0, refMax = 0.0, dot = 0.0, nr = 0.0, na = 0.0
        for (r, a) in zip(reference.map(Double.init), actual.map(Double.init)) {
            maxAbs = max(maxAbs, abs(a - r))
            refMax = max(refMax, abs(r))
            dot += r * a
            nr += r * r
            na += a * a
        }
        let cosine = nr > 0 && na > 0 ? dot / (nr.squareRoot() * na.squareRoot()) : 1
        let maxRel = maxAbs / max(refMax, 1e-12)
        let lim = limits(precision)
        let passed = reference.count == actual.count && maxRel <= lim.maxRel && cosine >= lim.minCosine
        return Outcome(passed: passed, maxAbs: maxAbs, maxRel: maxRel, cosine: cosine)
    }

    static func run(folder: URL, manifest: Manifest, engine: InferenceEngine) throws -> Outcome {
        let input = try floats(folder.appendingPathComponent(manifest.golden.input.file))
        let outputs = try engine.run(input, shape: manifest.golden.input.shape)
        let expected = try manifest.golden.outputs.map { try floats(folder.appendingPathComponent($0.file)) }
        let outcomes = zip(expected, outputs).map { compare($0, $1, precision: manifest.precision) }
        return outcomes.max { $0.maxRel < $1.maxRel } ?? Outcome(passed: false, maxAbs: .infinity, maxRel: .infinity, cosine: 0)
    }
}

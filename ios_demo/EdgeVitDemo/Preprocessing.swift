import CoreGraphics
import Foundation

/// The manifest's preprocessing: scale the picture (bicubic-quality) so it covers `resize`, center-crop to `size`,
/// then (v / 255 - mean) / std per channel in NCHW order, or raw 0-255 values for image-input CoreML artifacts.
struct Preprocessor {
    let spec: Manifest.Preprocess
    let rawPixels: Bool

    var height: Int { spec.size[0] }
    var width: Int { spec.size[1] }

    /// Size to scale a picture to before cropping (the same rule as edgevit's Python preprocessing).
    func scaledSize(width w: Int, height h: Int) -> (width: Int, height: Int) {
        let scale = max(Double(spec.resize[0]) / Double(h), Double(spec.resize[1]) / Double(w))
        return (max(spec.resize[1], Int((Double(w) * scale).rounded())),
                max(spec.resize[0], Int((Double(h) * scale).rounded())))
    }

    func cropOrigin(scaledWidth: Int, scaledHeight: Int) -> (x: Int, y: Int) {
        ((scaledWidth - width) / 2, (scaledHeight - height) / 2)
    }

    /// `rgba`: a scaled picture's pixels, row-major, 4 bytes each (R, G, B, A). Returns 3 x height x width floats.
    func tensor(rgba: [UInt8], scaledWidth: Int, scaledHeight: Int) -> [Float] {
        precondition(rgba.count == scaledWidth * scaledHeight * 4, "pixel buffer does not match its size")
        let origin = cropOrigin(scaledWidth: scaledWidth, scaledHeight: scaledHeight)
        let plane = height * width
        var out = [Float](repeating: 0, count: 3 * plane)
        for y in 0..<height {
            for x in 0..<width {
                let p = ((origin.y + y) * scaledWidth + origin.x + x) * 4
                for c in 0..<3 {
                    let v = Float(rgba[p + c])
                    out[c * plane + y * width + x] = rawPixels ? v : (v / 255 - spec.mean[c]) / spec.std[c]
                }
            }
        }
        return out
    }

    /// Scale a CGImage with high-quality interpolation and return its RGBA bytes.
    func scaledRGBA(_ image: CGImage) -> (pixels: [UInt8], width: Int, height: Int)? {
        let size = scaledSize(width: image.width, height: image.height)
        var pixels = [UInt8](repeating: 0, count: size.width * size.height * 4)
        let ok = pixels.withUnsafeMutableBytes { buffer -> Bool in
            guard let ctx = CGContext(data: buffer.baseAddress, width: size.width, height: size.height,
                                      bitsPerComponent: 8, bytesPerRow: size.width * 4,
                                      space: CGColorSpaceCreateDeviceRGB(),
                                      bitmapInfo: CGImageAlphaInfo.premultipliedLast.rawValue) else { return false }
            ctx.interpolationQuality = .high
            ctx.draw(image, in: CGRect(x: 0, y: 0, width: size.width, height: size.height))
            return true
        }
        return ok ? (pixels, size.width, size.height) : nil
    }
}

enum TopK {
    struct Entry: Identifiable {
        let index: Int
        let label: String
        let score: Float
        var id: Int { index }
    }

    static func top(_ scores: [Float], k: Int, labels: [String]?) -> [Entry] {
        scores.indices.sorted { scores[$0] == scores[$1] ? $0 < $1 : scores[$0] > scores[$1] }
            .prefix(k)
            .map { Entry(index: $0, label: labelFor($0, labels), score: scores[$0]) }
    }

    private static func labelFor(_ i: Int, _ labels: [String]?) -> String {
        guard let labels, labels.indices.contains(i) else { return "class \(i)" }
        return labels[i]
    }

    static func softmax(_ x: [Float]) -> [Float] {
        guard let m = x.max() else { return x }
        let e = x.map { exp($0 - m) }
        let s = e.reduce(0, +)
        return e.map { $0 / s }
    }
}

/// Same statistics as `edgevit bench`: nearest-rank percentiles, sample standard deviation.
struct LatencyStats {
    let meanMs: Double, stdMs: Double, minMs: Double, p50Ms: Double, p90Ms: Double, p99Ms: Double, runs: Int

    init(_ latencies: [Double]) {
        let xs = latencies.sorted()
        let n = xs.count
        let mean = xs.reduce(0, +) / Double(n)
        meanMs = mean
        stdMs = n > 1 ? (xs.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(n - 1)).squareRoot() : 0
        minMs = xs[0]
        func pct(_ p: Double) -> Double { xs[min(n - 1, max(0, Int((p / 100 * Double(n)).rounded(.up)) - 1))] }
        p50Ms = pct(50)
        p90Ms = pct(90)
        p99Ms = pct(99)
        runs = n
    }
}

import CoreGraphics
import Foundation

/// The manifest's preprocessing: resize the picture with the manifest's interpolation (`Resize`, Pillow's
/// algorithm, so "bicubic" means what it means on the Python side) so it covers `resize`, center-crop to `size`,
/// then (v / 255 - mean) / std per channel in NCHW order, or raw 0-255 values for image-input CoreML artifacts.
struct Preprocessor {
    let spec: Manifest.Preprocess
    let rawPixels: Bool

    var height: Int { spec.size[0] }
    var width: Int { spec.size[1] }

    /// The manifest's resize/crop rule; manifests without one used "edgevit-v1".
    var geometry: String { spec.geometry ?? "edgevit-v1" }

    /// Size to scale a picture to before cropping (the same rule as edgevit's Python preprocessing). "timm-eval" is
    /// timm's eval transform: a square `resize` S gives the shorter side S and the longer `S * long / short`
    /// truncated (torchvision's `Resize(int)`); a non-square one scales by `min(h / th, w / tw)` and rounds each
    /// side, halves to even (timm's `ResizeKeepRatio`). "edgevit-v1": the smallest size covering `resize`.
    func scaledSize(width w: Int, height h: Int) -> (width: Int, height: Int) {
        let th = spec.resize[0], tw = spec.resize[1]
        if geometry == "edgevit-v1" {
            let scale = max(Double(th) / Double(h), Double(tw) / Double(w))
            return (max(tw, Int((Double(w) * scale).rounded())), max(th, Int((Double(h) * scale).rounded())))
        }
        if th == tw {
            return w <= h ? (th, Int(Double(th) * Double(h) / Double(w))) : (Int(Double(th) * Double(w) / Double(h)), th)
        }
        let ratio = min(Double(h) / Double(th), Double(w) / Double(tw))
        return (Int((Double(w) / ratio).rounded(.toNearestOrEven)), Int((Double(h) / ratio).rounded(.toNearestOrEven)))
    }

    /// Left and top of the center crop (torchvision's `center_crop` for "timm-eval": half the slack, halves to even).
    func cropOrigin(scaledWidth: Int, scaledHeight: Int) -> (x: Int, y: Int) {
        if geometry == "edgevit-v1" {
            return ((scaledWidth - width) / 2, (scaledHeight - height) / 2)
        }
        return (Int((Double(scaledWidth - width) / 2).rounded(.toNearestOrEven)),
                Int((Double(scaledHeight - height) / 2).rounded(.toNearestOrEven)))
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

    /// Any picture -> the model input: its RGBA bytes, resized with the manifest's interpolation, cropped, normalised.
    func prepare(_ image: CGImage) -> [Float]? {
        guard let src = Preprocessor.rgba(image) else { return nil }
        let size = scaledSize(width: src.width, height: src.height)
        let scaled = Resize.resize(rgba: src.pixels, width: src.width, height: src.height,
                                   outWidth: size.width, outHeight: size.height, interpolation: spec.interpolation)
        return tensor(rgba: scaled, scaledWidth: size.width, scaledHeight: size.height)
    }

    /// A CGImage's own pixels as RGBA bytes (alpha ignored, no scaling: the resize is `Resize`'s, not Core Graphics').
    static func rgba(_ image: CGImage) -> (pixels: [UInt8], width: Int, height: Int)? {
        let w = image.width, h = image.height
        var pixels = [UInt8](repeating: 0, count: w * h * 4)
        let ok = pixels.withUnsafeMutableBytes { buffer -> Bool in
            guard let ctx = CGContext(data: buffer.baseAddress, width: w, height: h,
                                      bitsPerComponent: 8, bytesPerRow: w * 4,
                                      space: CGColorSpaceCreateDeviceRGB(),
                                      bitmapInfo: CGImageAlphaInfo.noneSkipLast.rawValue) else { return false }
            ctx.interpolationQuality = .none
            ctx.draw(image, in: CGRect(x: 0, y: 0, width: w, height: h))
            return true
        }
        return ok ? (pixels, w, h) : nil
    }
}

/// Pillow's `Image.resize` (BICUBIC, BILINEAR, NEAREST) on RGBA bytes, as in the Android app's Resize.kt: separable
/// convolution, horizontal pass first, output pixel i centred at (i + 0.5) * scale; when shrinking the support
/// widens by the scale (antialiasing); weights normalised and rounded to 22-bit fixed point; each pass rounds and
/// clamps to 8 bits. The XCTest compares it with Pillow's output on the fixture's resize-check picture.
enum Resize {
    private static let precisionBits = 32 - 8 - 2

    private static func bicubic(_ x: Double) -> Double {
        let a = -0.5
        let t = abs(x)
        if t < 1 { return ((a + 2) * t - (a + 3)) * t * t + 1 }
        if t < 2 { return (((t - 5) * t + 8) * t - 4) * a }
        return 0
    }

    private static func bilinear(_ x: Double) -> Double { max(0, 1 - abs(x)) }

    private static func coeffs(_ inSize: Int, _ outSize: Int, _ filter: (Double) -> Double, _ support: Double)
        -> (start: [Int], weights: [[Int]]) {
        let scale = Double(inSize) / Double(outSize)
        let filterScale = max(scale, 1)
        let radius = support * filterScale
        var start = [Int](repeating: 0, count: outSize)
        var weights = [[Int]](repeating: [], count: outSize)
        for i in 0..<outSize {
            let center = (Double(i) + 0.5) * scale
            let xmin = max(Int(center - radius + 0.5), 0)
            let xmax = min(Int(center + radius + 0.5), inSize)
            let k = (0..<(xmax - xmin)).map { filter((Double($0 + xmin) - center + 0.5) / filterScale) }
            let sum = k.reduce(0, +)
            start[i] = xmin
            weights[i] = k.map { v in
                let w = sum != 0 ? v / sum : 0
                let fixed = w * Double(1 << precisionBits)
                return Int(w < 0 ? -(-fixed + 0.5).rounded(.down) : (fixed + 0.5).rounded(.down))
            }
        }
        return (start, weights)
    }

    private static func pass(_ src: [UInt8], _ w: Int, _ h: Int, _ outW: Int, _ outH: Int,
                             _ c: (start: [Int], weights: [[Int]]), horizontal: Bool) -> [UInt8] {
        var out = [UInt8](repeating: 255, count: outW * outH * 4)
        let half = 1 << (precisionBits - 1)
        for y in 0..<outH {
            for x in 0..<outW {
                for ch in 0..<3 {
                    var acc = half
                    if horizontal {
                        let k = c.weights[x], x0 = c.start[x]
                        for j in 0..<k.count { acc += Int(src[(y * w + x0 + j) * 4 + ch]) * k[j] }
                    } else {
                        let k = c.weights[y], y0 = c.start[y]
                        for j in 0..<k.count { acc += Int(src[((y0 + j) * w + x) * 4 + ch]) * k[j] }
                    }
                    out[(y * outW + x) * 4 + ch] = UInt8(min(max(acc >> precisionBits, 0), 255))
                }
            }
        }
        return out
    }

    static func resize(rgba: [UInt8], width w: Int, height h: Int, outWidth: Int, outHeight: Int,
                       interpolation: String) -> [UInt8] {
        if w == outWidth && h == outHeight { return rgba }
        if interpolation == "nearest" {
            var out = [UInt8](repeating: 255, count: outWidth * outHeight * 4)
            for y in 0..<outHeight {
                let sy = min(Int((Double(y) + 0.5) * Double(h) / Double(outHeight)), h - 1)
                for x in 0..<outWidth {
                    let sx = min(Int((Double(x) + 0.5) * Double(w) / Double(outWidth)), w - 1)
                    for ch in 0..<4 { out[(y * outWidth + x) * 4 + ch] = rgba[(sy * w + sx) * 4 + ch] }
                }
            }
            return out
        }
        let filter: (Double) -> Double = interpolation == "bilinear" ? bilinear : bicubic
        let support = interpolation == "bilinear" ? 1.0 : 2.0
        var pixels = rgba
        var cw = w
        if outWidth != w {
            pixels = pass(pixels, w, h, outWidth, h, coeffs(w, outWidth, filter, support), horizontal: true)
            cw = outWidth
        }
        if outHeight != h {
            pixels = pass(pixels, cw, h, cw, outHeight, coeffs(h, outHeight, filter, support), horizontal: false)
        }
        return pixels
    }
}

/// The runtime versions this app links (ci/gen_pbxproj.py pins ExecuTorch's Swift package to the same release;
/// tests/apps checks both against edgevit's pyproject.toml), and the check every engine runs on load.
enum RuntimeVersions {
    static let executorch = "1.5.1"

    static func compare(_ a: String, _ b: String) -> Int {
        let x = a.split(separator: ".").map { Int($0.prefix { $0.isNumber }) ?? 0 }
        let y = b.split(separator: ".").map { Int($0.prefix { $0.isNumber }) ?? 0 }
        for i in 0..<max(x.count, y.count) {
            let d = (i < x.count ? x[i] : 0) - (i < y.count ? y[i] : 0)
            if d != 0 { return d > 0 ? 1 : -1 }
        }
        return 0
    }

    /// Throws naming both versions when the artifact needs a newer runtime (or iOS) than this app has.
    static func requireSupported(_ manifest: Manifest, iosVersion: String) throws {
        guard let req = manifest.runtimeRequirements else { return }
        let have: String
        switch req.runtime {
        case "executorch": have = executorch
        case "ios", "coreai": have = iosVersion  // Core AI ships with the system (iOS 27+)
        default: return
        }
        if compare(have, req.minVersion) < 0 {
            throw DemoError.unsupported("\(manifest.artifact) needs \(req.runtime) >= \(req.minVersion) (\(req.why)), "
                + "but this app has \(req.runtime) \(have): update the app or convert with a matching edgevit")
        }
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

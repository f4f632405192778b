import XCTest
@testable import EdgeVitDemo

/// The app's preprocessing against the golden vector the Python side writes (tests/data/app_fixture, added to
/// this test target as a folder reference named "app_fixture").
final class PreprocessingTests: XCTestCase {
    private func fixture(_ name: String) throws -> URL {
        let bundle = Bundle(for: Self.self)
        guard let url = bundle.url(forResource: name, withExtension: nil, subdirectory: "app_fixture") else {
            throw XCTSkip("fixture \(name) not bundled")
        }
        return url
    }

    func testPreprocessingReproducesGoldenVector() throws {
        for name in ["digits_xnnpack", "digits_coreml"] {
            let folder = try fixture(name)
            let manifest = try Manifest.load(folder: folder)
            let pre = Preprocessor(spec: manifest.preprocess, rawPixels: manifest.takesRawPixels)
            let image = try XCTUnwrap(UIImage(contentsOfFile: folder.appendingPathComponent(manifest.golden.image).path)?.cgImage)
            let size = pre.scaledSize(width: image.width, height: image.height)
            XCTAssertEqual(size.width, image.width, "the golden image is stored at the resize size")
            let mine = try XCTUnwrap(pre.prepare(image))
            let golden = try GoldenCheck.floats(folder.appendingPathComponent(manifest.golden.input.file))
            XCTAssertEqual(mine.count, golden.count)
            let worst = zip(mine, golden).map { abs($0 - $1) }.max() ?? 0
            XCTAssertLessThanOrEqual(worst, 1e-5, name)
        }
    }

    /// A picture that needs resizing: Resize (Pillow's algorithm) against Pillow's own output, within one pixel
    /// level (1/255 of the range before normalisation), the tolerance the Android JVM test also states.
    func testResizeReproducesPython() throws {
        for name in ["digits_xnnpack", "digits_coreml"] {
            let folder = try fixture(name)
            let manifest = try Manifest.load(folder: folder)
            let check = try XCTUnwrap(manifest.golden.resizeCheck)
            let pre = Preprocessor(spec: manifest.preprocess, rawPixels: manifest.takesRawPixels)
            let image = try XCTUnwrap(UIImage(contentsOfFile: folder.appendingPathComponent(check.image).path)?.cgImage)
            XCTAssertNotEqual(pre.scaledSize(width: image.width, height: image.height).width, image.width)
            let mine = try XCTUnwrap(pre.prepare(image))
            let golden = try GoldenCheck.floats(folder.appendingPathComponent(check.input.file))
            XCTAssertEqual(mine.count, golden.count)
            let plane = pre.height * pre.width
            var worst: Float = 0
            for i in mine.indices {
                let scale: Float = manifest.takesRawPixels ? 1 : 255 * manifest.preprocess.std[i / plane]
                worst = max(worst, abs(mine[i] - golden[i]) * scale)
            }
            XCTAssertLessThanOrEqual(worst, 1.001, name)
        }
    }

    /// timm's eval geometry: the values tests/test_preprocess_timm.py checks against its transcription of timm's
    /// transform (TIMM_CASES there).
    func testTimmEvalGeometryMatchesTimm() {
        func pre(_ size: [Int], _ resize: [Int]) -> Preprocessor {
            Preprocessor(spec: Manifest.Preprocess(size: size, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225],
                                                   resize: resize, cropPct: 0.95, interpolation: "bicubic",
                                                   color: "RGB", geometry: "timm-eval"), rawPixels: false)
        }
        let square = pre([224, 224], [235, 235])
        XCTAssertTrue(square.scaledSize(width: 333, height: 500) == (235, 352))
        XCTAssertTrue(square.scaledSize(width: 500, height: 333) == (352, 235))
        XCTAssertTrue(square.scaledSize(width: 640, height: 480) == (313, 235))
        XCTAssertTrue(square.cropOrigin(scaledWidth: 235, scaledHeight: 352) == (6, 64))
        XCTAssertTrue(square.cropOrigin(scaledWidth: 313, scaledHeight: 235) == (44, 6))
        let wide = pre([224, 256], [235, 269])
        XCTAssertTrue(wide.scaledSize(width: 333, height: 500) == (269, 404))
        XCTAssertTrue(wide.scaledSize(width: 301, height: 299) == (269, 267))
        XCTAssertTrue(wide.cropOrigin(scaledWidth: 269, scaledHeight: 404) == (6, 90))
    }

    func testArtifactNeedingNewerRuntimeIsRefused() throws {
        let folder = try fixture("digits_xnnpack")
        let manifest = try Manifest.load(folder: folder)
        XCTAssertNoThrow(try RuntimeVersions.requireSupported(manifest, iosVersion: "17.0"))
        var json = try XCTUnwrap(JSONSerialization.jsonObject(
            with: Data(contentsOf: folder.appendingPathComponent("manifest.json"))) as? [String: Any])
        json["runtime_requirements"] = ["runtime": "executorch", "min_version": "99.0.0", "why": "test"]
        let newer = try JSONDecoder().decode(Manifest.self, from: JSONSerialization.data(withJSONObject: json))
        XCTAssertThrowsError(try RuntimeVersions.requireSupported(newer, iosVersion: "17.0"))
    }

    func testLatencyStatsMatchEdgevitBench() {
        let s = LatencyStats((1...100).map(Double.init))
        XCTAssertEqual(s.p50Ms, 50)
        XCTAssertEqual(s.p90Ms, 90)
        XCTAssertEqual(s.p99Ms, 99)
        XCTAssertEqual(s.meanMs, 50.5, accuracy: 1e-9)
    }

    func testTopK() {
        let top = TopK.top([0.1, 3, -1, 2], k: 3, labels: ["a", "b", "c", "d"])
        XCTAssertEqual(top.map(\.label), ["b", "d", "a"])
    }
}

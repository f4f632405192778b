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
            let scaled = try XCTUnwrap(pre.scaledRGBA(image))
            XCTAssertEqual(scaled.width, image.width, "the golden image is stored at the resize size")
            let mine = pre.tensor(rgba: scaled.pixels, scaledWidth: scaled.width, scaledHeight: scaled.height)
            let golden = try GoldenCheck.floats(folder.appendingPathComponent(manifest.golden.input.file))
            XCTAssertEqual(mine.count, golden.count)
            let worst = zip(mine, golden).map { abs($0 - $1) }.max() ?? 0
            XCTAssertLessThanOrEqual(worst, 1e-5, name)
        }
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

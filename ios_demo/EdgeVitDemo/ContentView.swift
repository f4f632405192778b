import PhotosUI
import SwiftUI

/// Artifact folders are read from the app bundle's Models/ and from Documents/Models/ (see README).
final class DemoModel: ObservableObject {
    @Published var status = "No artifact loaded"
    @Published var results: [TopK.Entry] = []
    @Published var benchmarkSummary = ""
    @Published var units: ComputeUnitsChoice = .all
    private(set) var folder: URL?
    private(set) var manifest: Manifest?
    private var engine: InferenceEngine?

    static func artifactFolders() -> [URL] {
        let fm = FileManager.default
        let roots = [Bundle.main.resourceURL?.appendingPathComponent("Models"),
                     fm.urls(for: .documentDirectory, in: .userDomainMask).first?.appendingPathComponent("Models")]
        return roots.compactMap { $0 }.flatMap { root in
            ((try? fm.contentsOfDirectory(at: root, includingPropertiesForKeys: nil)) ?? [])
                .filter { fm.fileExists(atPath: $0.appendingPathComponent("manifest.json").path) }
        }.sorted { $0.lastPathComponent < $1.lastPathComponent }
    }

    func load(_ folder: URL) {
        do {
            let m = try Manifest.load(folder: folder)
            let e = try Engines.open(folder: folder, manifest: m, units: units)
            self.folder = folder
            manifest = m
            engine = e
            // first launch: the artifact must reproduce PyTorch's outputs on the golden input
            let check = try GoldenCheck.run(folder: folder, manifest: m, engine: e)
            status = "\(m.model) \(m.target)/\(m.precision): \(check.summary)"
        } catch {
            status = "Could not load \(folder.lastPathComponent): \(error.localizedDescription)"
        }
    }

    func classify(_ image: CGImage) -> [TopK.Entry] {
        guard let m = manifest, let e = engine else { return [] }
        let pre = Preprocessor(spec: m.preprocess, rawPixels: m.takesRawPixels)
        guard let input = pre.prepare(image) else { return [] }
        guard let scores = try? e.run(input, shape: [1, 3, pre.height, pre.width]).first else { return [] }
        let probs = m.outputs.first?.name == "probabilities" ? scores : TopK.softmax(scores)
        return TopK.top(probs, k: 5, labels: m.labels)
    }

    func benchmark(warmup: Int, runs: Int) {
        guard let folder, let manifest else { return }
        do {
            let (file, stats) = try BenchmarkRunner(folder: folder, manifest: manifest, units: units)
                .run(warmup: warmup, runs: runs)
            benchmarkSummary = String(format: "p50 %.2f ms, p90 %.2f ms, p99 %.2f ms (%d runs)\nsaved %@",
                                      stats.p50Ms, stats.p90Ms, stats.p99Ms, stats.runs, file.lastPathComponent)
        } catch {
            benchmarkSummary = "Benchmark failed: \(error.localizedDescription)"
        }
    }
}

struct ContentView: View {
    @StateObject private var demo = DemoModel()
    @State private var picked: PhotosPickerItem?
    @State private var warmup = 10
    @State private var runs = 50

    var body: some View {
        TabView {
            NavigationStack {
                List {
                    Section("Artifact") {
                        let iosMajor = ProcessInfo.processInfo.operatingSystemVersion.majorVersion
                        if let best = Engines.preferred(DemoModel.artifactFolders(), iosMajor: iosMajor) {
                            Button("Best for this device: \(best.lastPathComponent)") { demo.load(best) }
                        }
                        ForEach(DemoModel.artifactFolders(), id: \.self) { folder in
                            Button(folder.lastPathComponent) { demo.load(folder) }
                        }
                        Text(demo.status).font(.footnote)
                    }
                    Section("Photo") {
                        PhotosPicker("Choose a photo", selection: $picked, matching: .images)
                        ForEach(demo.results) { r in
                            HStack { Text(r.label); Spacer(); Text(String(format: "%.1f%%", 100 * r.score)) }
                        }
                    }
                }
                .navigationTitle("edgevit")
            }
            .tabItem { Label("Classify", systemImage: "photo") }
            .onChange(of: picked) { _, item in
                Task {
                    guard let data = try? await item?.loadTransferable(type: Data.self),
                          let ui = UIImage(data: data), let cg = ui.cgImage else { return }
                    demo.results = demo.classify(cg)
                }
            }

            CameraView(camera: CameraClassifier { image in demo.classify(image).first })
                .tabItem { Label("Camera", systemImage: "camera") }

            Form {
                Picker("Compute units", selection: $demo.units) {
                    Text("CPU only").tag(ComputeUnitsChoice.cpuOnly)
                    Text("CPU + GPU").tag(ComputeUnitsChoice.cpuAndGPU)
                    Text("All (Neural Engine)").tag(ComputeUnitsChoice.all)
                }
                Stepper("Warm-up: \(warmup)", value: $warmup, in: 0...100)
                Stepper("Runs: \(runs)", value: $runs, in: 5...1000, step: 5)
                Button("Run benchmark") { demo.benchmark(warmup: warmup, runs: runs) }
                Text(demo.benchmarkSummary).font(.footnote)
            }
            .tabItem { Label("Benchmark", systemImage: "speedometer") }
        }
        .onAppear { if let first = DemoModel.artifactFolders().first { demo.load(first) } }
    }
}

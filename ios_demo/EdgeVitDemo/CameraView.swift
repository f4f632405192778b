import AVFoundation
import SwiftUI

/// Live classification of the camera feed: frames -> the same preprocessing and engine as photos.
final class CameraClassifier: NSObject, ObservableObject, AVCaptureVideoDataOutputSampleBufferDelegate {
    @Published var label = ""
    let session = AVCaptureSession()
    private let queue = DispatchQueue(label: "edgevit.camera")
    private let classify: (CGImage) -> TopK.Entry?
    private let context = CIContext()

    init(classify: @escaping (CGImage) -> TopK.Entry?) {
        self.classify = classify
        super.init()
    }

    func start() {
        guard let device = AVCaptureDevice.default(for: .video),
              let input = try? AVCaptureDeviceInput(device: device), session.canAddInput(input) else { return }
        session.beginConfiguration()
        session.addInput(input)
        let output = AVCaptureVideoDataOutput()
        output.alwaysDiscardsLateVideoFrames = true
        output.setSampleBufferDelegate(self, queue: queue)
        if session.canAddOutput(output) { session.addOutput(output) }
        session.commitConfiguration()
        queue.async { self.session.startRunning() }
    }

    func stop() { session.stopRunning() }

    func captureOutput(_ output: AVCaptureOutput, didOutput sampleBuffer: CMSampleBuffer,
                       from connection: AVCaptureConnection) {
        guard let pixels = CMSampleBufferGetImageBuffer(sampleBuffer),
              let image = context.createCGImage(CIImage(cvPixelBuffer: pixels),
                                                from: CIImage(cvPixelBuffer: pixels).extent),
              let top = classify(image) else { return }
        DispatchQueue.main.async { self.label = String(format: "%@  %.1f%%", top.label, 100 * top.score) }
    }
}

struct CameraView: View {
    @StateObject var camera: CameraClassifier

    var body: some View {
        VStack {
            Text(camera.label).font(.title2).padding()
            Text("Point the camera at something").foregroundStyle(.secondary)
        }
        .onAppear { camera.start() }
        .onDisappear { camera.stop() }
    }
}

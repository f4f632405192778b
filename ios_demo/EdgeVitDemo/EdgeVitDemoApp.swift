import SwiftUI

@main
struct EdgeVitDemoApp: App {
    var body: some Scene {
        WindowGroup { ContentView() }
    }
}

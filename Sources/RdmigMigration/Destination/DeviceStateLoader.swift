#if canImport(Glibc)
import Glibc
#endif
import Foundation
import RdmigChannels
import RdmigDeviceState
import RdmigSystem

/// Reads the VF state stream on its own thread and feeds the providers, so the control thread
/// never blocks on device state.
package final class DeviceStateLoader: Sendable {
    /// The thread holds this, never the loader: a thread holding its owner keeps it alive while
    /// it runs, so the deinit that stops it never came (one thread, stream and ring leaked per
    /// migration with a VF on a `dest --keep-serving`).
    private let state: State
    private let thread: SystemThread

    package init(stream: ByteStreamReceiver, providers: [UInt32: any DeviceStateProvider]) throws(SystemCallError) {
        let state = State(stream: stream, providers: providers)
        self.state = state
        thread = try SystemThread(name: "rdmig-vf-load") { state.run() }
    }

    /// Stops and joins the thread, then closes the stream; calling it again does nothing.
    /// The stream is closed only after the join: a ByteStreamReceiver is used by one thread at
    /// a time (closing it under a blocked read traps).
    package func close() {
        state.stop()
        thread.join()
        state.stream.close()
    }

    deinit {
        close()
    }

    package var failure: String? { state.failure }
    package var precopyBytes: UInt64 { state.precopyBytes }
    package var stopCopyBytes: UInt64 { state.stopCopyBytes }
    package func initialDataLoaded(tag: UInt32) -> Bool { state.initialDataLoaded(tag: tag) }
    package func stopCopyComplete(tag: UInt32) -> Bool { state.stopCopyComplete(tag: tag) }

    /// Waits until every device's stop-copy state arrived or the stream ended.
    package func waitForEnd(timeout: Duration) { state.waitForEnd(timeout: timeout) }

    private final class State: @unchecked Sendable {
        let stream: ByteStreamReceiver
        private let condition = NSCondition()
        private var receiver: DeviceStateReceiver
        private var ended = false
        private var stopping = false
        private var error: String?
        /// How long one read waits before the thread looks whether it is being stopped.
        static let stopCheckInterval = Duration.milliseconds(50)

        init(stream: ByteStreamReceiver, providers: [UInt32: any DeviceStateProvider]) {
            self.stream = stream
            receiver = DeviceStateReceiver(providers: providers)
        }

        func run() {
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 256 * 1024, alignment: 64)
            defer { buffer.deallocate() }
            while true {
                let count: Int
                do {
                    count = try stream.read(into: buffer, timeout: Self.stopCheckInterval)
                } catch .timedOut {
                    if isStopping { return }
                    continue
                } catch {
                    finish(error: "\(error)")
                    return
                }
                if count == 0 {
                    finish(error: nil)
                    return
                }
                condition.lock()
                do {
                    try receiver.receive(UnsafeRawBufferPointer(rebasing: buffer[0..<count]))
                } catch {
                    self.error = "\(error)"
                }
                let done = self.error != nil || receiver.allStopCopyComplete
                condition.broadcast()
                condition.unlock()
                if done {
                    finish(error: nil)
                    return
                }
            }
        }

        func stop() {
            condition.lock()
            stopping = true
            condition.unlock()
        }

        private var isStopping: Bool { condition.lock(); defer { condition.unlock() }; return stopping }

        private func finish(error: String?) {
            condition.lock()
            if let error, self.error == nil, !receiver.allStopCopyComplete { self.error = error }
            ended = true
            condition.broadcast()
            condition.unlock()
        }

        var failure: String? { condition.lock(); defer { condition.unlock() }; return error }
        var precopyBytes: UInt64 { condition.lock(); defer { condition.unlock() }; return receiver.precopyBytes }
        var stopCopyBytes: UInt64 { condition.lock(); defer { condition.unlock() }; return receiver.stopCopyBytes }

        func initialDataLoaded(tag: UInt32) -> Bool {
            condition.lock(); defer { condition.unlock() }
            return receiver.initialDataLoaded(tag: tag)
        }

        func stopCopyComplete(tag: UInt32) -> Bool {
            condition.lock(); defer { condition.unlock() }
            return receiver.stopCopyComplete(tag: tag)
        }

        /// Waits until every device's stop-copy state arrived or the stream ended.
        func waitForEnd(timeout: Duration) {
            let deadline = Date(timeIntervalSinceNow: timeout.seconds)
            condition.lock()
            while !ended && !receiver.allStopCopyComplete {
                if !condition.wait(until: deadline) { break }
            }
            condition.unlock()
        }
    }
}

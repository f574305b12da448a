import Foundation
import Testing

/// A real `rdmig` process started by a test: its stderr is collected line by line so a test
/// can wait for "listening on …" or a fault's stall announcement, and its stdout (the JSON
/// report) is read at exit.
public final class RdmigProcess: @unchecked Sendable {
    public let process = Process()
    private let output = Pipe()
    private let errors = Pipe()
    private let lock = NSCondition()
    private var errorText = ""
    private var outputData = Data()
    private var errorsClosed = false
    private var outputClosed = false

    /// The `rdmig` next to the test bundle (SwiftPM builds it for this test target).
    public static var executable: URL {
        var directory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        // The runner may be the .xctest bundle itself or a binary inside it.
        while !FileManager.default.fileExists(atPath: directory.appendingPathComponent("rdmig").path), directory.path != "/" {
            directory = directory.deletingLastPathComponent()
        }
        return directory.appendingPathComponent("rdmig")
    }

    public init(_ arguments: [String], environment: [String: String] = [:]) throws {
        process.executableURL = RdmigProcess.executable
        process.arguments = arguments
        var merged = ProcessInfo.processInfo.environment
        merged.removeValue(forKey: "RDMIG_FAULT")
        merged.removeValue(forKey: "RDMIG_CONFIG")
        // The whole suite under another configuration (e.g. one page channel), on purpose:
        // RDMIG_TEST_CONFIG=FILE swift test. A test's own --config still wins over it.
        if let config = ProcessInfo.processInfo.environment["RDMIG_TEST_CONFIG"] { merged["RDMIG_CONFIG"] = config }
        for (key, value) in environment { merged[key] = value }
        process.environment = merged
        process.standardOutput = output
        process.standardError = errors
        // Each handler removes itself at end of file: a handler left installed keeps a dispatch
        // source watching the descriptor, and when the Pipe is released and closes it under
        // that source, libdispatch can crash in its event loop (seen once in a CI run).
        errors.fileHandleForReading.readabilityHandler = { [weak self] handle in
            let data = handle.availableData
            if data.isEmpty { handle.readabilityHandler = nil }
            guard let self else { return }
            self.lock.lock()
            if data.isEmpty { self.errorsClosed = true } else { self.errorText += String(decoding: data, as: UTF8.self) }
            self.lock.broadcast()
            self.lock.unlock()
        }
        output.fileHandleForReading.readabilityHandler = { [weak self] handle in
            let data = handle.availableData
            if data.isEmpty { handle.readabilityHandler = nil }
            guard let self else { return }
            self.lock.lock()
            if data.isEmpty { self.outputClosed = true } else { self.outputData.append(data) }
            self.lock.broadcast()
            self.lock.unlock()
        }
        try process.run()
    }

    deinit {
        if process.isRunning { process.terminate() }
        // Cancel the handlers' dispatch sources before the pipes close their descriptors.
        errors.fileHandleForReading.readabilityHandler = nil
        output.fileHandleForReading.readabilityHandler = nil
    }

    public var stderr: String {
        lock.lock()
        defer { lock.unlock() }
        return errorText
    }

    /// Waits until stderr has a line containing `text`; returns that line.
    public func waitForLine(containing text: String, timeout: TimeInterval = 60) throws -> String {
        let deadline = Date(timeIntervalSinceNow: timeout)
        lock.lock()
        defer { lock.unlock() }
        while true {
            if let line = errorText.split(separator: "\n").first(where: { $0.contains(text) }) { return String(line) }
            if errorsClosed && !process.isRunning {
                throw ProcessFailure("rdmig exited (\(process.terminationStatus)) before printing '\(text)'; stderr:\n\(errorText)")
            }
            if !lock.wait(until: deadline) {
                throw ProcessFailure("no '\(text)' from rdmig within \(Int(timeout)) s; stderr:\n\(errorText)")
            }
        }
    }

    /// The port a `rdmig dest --listen HOST:0` chose.
    public func listeningPort() throws -> UInt16 {
        let line = try waitForLine(containing: "listening on")
        guard let field = line.split(separator: " ").first(where: { $0.contains(":") && $0.last?.isNumber == true }),
              let port = UInt16(field.split(separator: ":").last!) else {
            throw ProcessFailure("cannot read the port from '\(line)'")
        }
        return port
    }

    /// Waits for exit (killing the process after `timeout`), returns the exit status.
    @discardableResult
    public func wait(timeout: TimeInterval = 120) -> Int32 {
        let deadline = Date(timeIntervalSinceNow: timeout)
        while process.isRunning && Date() < deadline { usleep(10_000) }
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
        process.waitUntilExit()
        // Let the readability handlers deliver the last bytes.
        let settle = Date(timeIntervalSinceNow: 2)
        lock.lock()
        while !(errorsClosed && outputClosed) && Date() < settle { _ = lock.wait(until: settle) }
        lock.unlock()
        return process.terminationStatus
    }

    public func kill() {
        Foundation.kill(process.processIdentifier, SIGKILL)
    }

    /// Waits until a process that prints one report per migration (`dest --keep-serving
    /// --json`) has printed `count` of them; returns them in order. The reports are pretty
    /// printed, so each ends with a "}" alone on a line (nested objects are indented).
    public func waitForReports(_ count: Int, timeout: TimeInterval = 60) throws -> [[String: Any]] {
        let deadline = Date(timeIntervalSinceNow: timeout)
        lock.lock()
        defer { lock.unlock() }
        while true {
            let text = String(decoding: outputData, as: UTF8.self)
            var objects: [String] = []
            var current = ""
            for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
                current += line + "\n"
                if line == "}" {
                    objects.append(current)
                    current = ""
                }
            }
            if objects.count >= count {
                return try objects.prefix(count).map { object in
                    guard let report = try JSONSerialization.jsonObject(with: Data(object.utf8)) as? [String: Any] else {
                        throw ProcessFailure("not a JSON object on stdout: \(object)")
                    }
                    return report
                }
            }
            if outputClosed && !process.isRunning {
                throw ProcessFailure("rdmig exited (\(process.terminationStatus)) after \(objects.count) of \(count) reports; stderr:\n\(errorText)")
            }
            if !lock.wait(until: deadline) {
                throw ProcessFailure("\(objects.count) of \(count) reports from rdmig within \(Int(timeout)) s; stderr:\n\(errorText)")
            }
        }
    }

    /// The JSON report on stdout, after `wait()`.
    public func report() throws -> [String: Any] {
        lock.lock()
        let data = outputData
        lock.unlock()
        guard let object = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw ProcessFailure("stdout is not one JSON object: \(String(decoding: data, as: UTF8.self))\nstderr:\n\(stderr)")
        }
        return object
    }
}

public struct ProcessFailure: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// A fresh pre-shared key file both processes of a test use.
public func temporaryKeyFile() throws -> String {
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("rdmig-test-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    let path = folder.appendingPathComponent("psk").path
    let key = (0..<32).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()
    guard FileManager.default.createFile(atPath: path, contents: Data(key.utf8), attributes: [.posixPermissions: 0o600]) else {
        throw ProcessFailure("cannot create the key file \(path)")
    }
    return path
}

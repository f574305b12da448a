import Foundation
import RdmigSystem
import TOMLKit

/// A parsed `rdmig.toml`: sections of keys, read with typed getters that name the file, the
/// section and the key in every error, and that reject keys nobody reads (a typo in a config
/// file must not silently fall back to a default).
public final class ConfigurationFile {
    public let path: String
    private var sections: [String: [String: TOMLValueConvertible]] = [:]
    private var consumed: Set<String> = []

    public struct Error: Swift.Error, CustomStringConvertible, Equatable {
        public var description: String
        init(_ description: String) { self.description = description }
    }

    /// The config file a command uses when `--config` is not given: `$RDMIG_CONFIG`, else none.
    public static var defaultPath: String? { ProcessInfo.processInfo.environment["RDMIG_CONFIG"] }

    public convenience init(path: String) throws(Error) {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw Error("cannot read config file \(path): \(error.localizedDescription)")
        }
        try self.init(text: text, path: path)
    }

    public init(text: String, path: String) throws(Error) {
        self.path = path
        let table: TOMLTable
        do {
            table = try TOMLTable(string: text)
        } catch let error as TOMLParseError {
            throw Error("\(path):\(error.source.begin.line):\(error.source.begin.column): not valid TOML: \(error.description)")
        } catch {
            throw Error("\(path): not valid TOML: \(error)")
        }
        for key in table.keys {
            guard let section = table[key]?.table else {
                throw Error("\(path): top-level key '\(key)' must be inside a section such as [migration] or [transport]")
            }
            var values: [String: TOMLValueConvertible] = [:]
            for name in section.keys { values[name] = section[name] }
            sections[key] = values
        }
    }

    /// An empty configuration (no file): every getter returns nil.
    public init() { path = "(none)" }

    public func section(_ name: String) -> Section { Section(file: self, name: name) }

    /// Fails on the first key or section no getter asked for.
    public func rejectUnknownKeys(knownSections: [String]) throws(Error) {
        for (name, values) in sections.sorted(by: { $0.key < $1.key }) {
            guard knownSections.contains(name) else {
                throw Error("\(path): unknown section [\(name)]: known sections are \(knownSections.map { "[\($0)]" }.joined(separator: ", "))")
            }
            for key in values.keys.sorted() where !consumed.contains("\(name).\(key)") {
                let known = consumed.filter { $0.hasPrefix("\(name).") }.map { String($0.dropFirst(name.count + 1)) }.sorted()
                throw Error("\(path): unknown key '\(key)' in [\(name)]: known keys are \(known.joined(separator: ", "))")
            }
        }
    }

    public struct Section {
        let file: ConfigurationFile
        let name: String

        private func raw(_ key: String) -> TOMLValueConvertible? {
            file.consumed.insert("\(name).\(key)")
            return file.sections[name]?[key]
        }

        private func wrongType(_ key: String, _ expected: String, _ value: TOMLValueConvertible) -> Error {
            Error("\(file.path): [\(name)] \(key) = \(value.debugDescription) must be \(expected)")
        }

        /// Registers a key as known without reading it (for keys another layer reads).
        public func declare(_ key: String) { _ = raw(key) }

        public func string(_ key: String) throws(Error) -> String? {
            guard let value = raw(key) else { return nil }
            guard let string = value.string else { throw wrongType(key, "a string", value) }
            return string
        }

        public func int(_ key: String) throws(Error) -> Int? {
            guard let value = raw(key) else { return nil }
            guard let int = value.int else { throw wrongType(key, "an integer", value) }
            return int
        }

        public func bool(_ key: String) throws(Error) -> Bool? {
            guard let value = raw(key) else { return nil }
            guard let bool = value.bool else { throw wrongType(key, "true or false", value) }
            return bool
        }

        public func strings(_ key: String) throws(Error) -> [String]? {
            guard let value = raw(key) else { return nil }
            if let single = value.string { return [single] }
            guard let array = value.array else { throw wrongType(key, "a string or an array of strings", value) }
            var result: [String] = []
            for element in array {
                guard let string = element.string else { throw wrongType(key, "an array of strings", value) }
                result.append(string)
            }
            return result
        }

        /// A string, number or boolean (as text) parsed by `parse`, whose error text is reported with the key.
        public func parsed<T>(_ key: String, _ parse: (String) throws -> T) throws(Error) -> T? {
            guard let value = raw(key) else { return nil }
            let text: String
            if let string = value.string {
                text = string
            } else if let int = value.int {
                text = String(int)
            } else if let double = value.double {
                text = String(double)
            } else if let bool = value.bool {
                text = String(bool)
            } else {
                throw wrongType(key, "a string", value)
            }
            do {
                return try parse(text)
            } catch {
                throw Error("\(file.path): [\(name)] \(key): \(error)")
            }
        }

        public func byteCount(_ key: String) throws(Error) -> ByteCount? {
            try parsed(key) { text in try ByteCount(parsing: text) }
        }

        public func byteRate(_ key: String) throws(Error) -> ByteRate? {
            try parsed(key) { text in try ByteRate(parsing: text) }
        }

        public func duration(_ key: String) throws(Error) -> Duration? {
            try parsed(key) { text in try DurationParser.parse(text) }
        }

        public func choice<T: RawRepresentable & CaseIterable>(_ key: String, _ type: T.Type) throws(Error) -> T? where T.RawValue == String {
            try parsed(key) { text in
                guard let value = T(rawValue: text) else {
                    throw Error("'\(text)' is not one of \(T.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                return value
            }
        }
    }
}

/// A configuration value that cannot be used, with the key, the value and what would work.
public enum MigrationConfigurationError: Error, CustomStringConvertible, Equatable, Sendable {
    case unknownKey(String, known: [String])
    case invalidValue(key: String, value: String, expected: String)
    case outOfRange(key: String, value: String, rule: String)
    case inconsistent(String)

    public var description: String {
        switch self {
        case .unknownKey(let key, let known):
            return "unknown migration setting '\(key)': known settings are \(known.joined(separator: ", "))"
        case .invalidValue(let key, let value, let expected):
            return "\(key) = '\(value)' is not valid: expected \(expected)"
        case .outOfRange(let key, let value, let rule):
            return "\(key) = \(value) is out of range: \(rule)"
        case .inconsistent(let why):
            return why
        }
    }
}

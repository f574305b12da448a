import Foundation

/// Command lines printed for a person to paste into a POSIX shell.
enum ShellWords {
    /// `word` as the shell reads it back: unchanged when it has only safe characters, else
    /// in single quotes (with each ' written as '\'').
    static func quote(_ word: String) -> String {
        let safe = word.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "-_./:=,+@%".contains($0)) }
        if safe && !word.isEmpty { return word }
        return "'" + word.replacingOccurrences(of: "'", with: #"'\''"#) + "'"
    }

    static func join(_ words: [String]) -> String {
        words.map(quote).joined(separator: " ")
    }
}

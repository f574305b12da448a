#if canImport(Glibc)
import Glibc
#endif
import Foundation
import RdmigFuzzTargets

/// The fuzz targets' command line (Tests/fuzz/README.md):
///
///     rdmig-fuzz list                       the targets
///     rdmig-fuzz seeds DIR                  writes the seed corpus, DIR/<target>/seed-NN
///     rdmig-fuzz run TARGET FILE|DIR...     runs the target's body on each file (replays a crash)
///     rdmig-fuzz fuzz TARGET [libFuzzer options and corpus directories]
///
/// `fuzz` exists only in the libFuzzer build (Tests/fuzz/run.sh): the normal build has no
/// libFuzzer to link, and keeps the rest so that the targets always compile.

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("rdmig-fuzz: \(message)\n".utf8))
    exit(2)
}

func target(named name: String) -> FuzzTarget {
    guard let target = FuzzTarget(rawValue: name) else {
        fail("no target '\(name)'; the targets are \(FuzzTarget.allCases.map(\.rawValue).joined(separator: ", "))")
    }
    return target
}

/// The files named, with a directory standing for the files in it.
func inputFiles(_ paths: ArraySlice<String>) -> [String] {
    var files: [String] = []
    for path in paths {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { fail("\(path) does not exist") }
        if isDirectory.boolValue {
            let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
            files += names.sorted().map { "\(path)/\($0)" }
        } else {
            files.append(path)
        }
    }
    return files
}

let arguments = CommandLine.arguments
switch arguments.count > 1 ? arguments[1] : "" {
case "list":
    for target in FuzzTarget.allCases { print(target.rawValue) }

case "seeds" where arguments.count == 3:
    for target in FuzzTarget.allCases {
        let directory = "\(arguments[2])/\(target.rawValue)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        for (index, seed) in target.seeds.enumerated() {
            let name = index < 10 ? "seed-0\(index)" : "seed-\(index)"
            try Data(seed).write(to: URL(fileURLWithPath: "\(directory)/\(name)"))
        }
        print("\(target.rawValue): \(target.seeds.count) seeds")
    }

case "run" where arguments.count >= 4:
    let chosen = target(named: arguments[2])
    var count = 0
    for file in inputFiles(arguments[3...]) {
        guard let data = FileManager.default.contents(atPath: file) else { fail("cannot read \(file)") }
        do {
            try chosen.run(Array(data))
        } catch {
            print("\(file): \(error)")
            exit(1)
        }
        count += 1
    }
    print("\(chosen.rawValue): \(count) inputs, no property violated")

case "fuzz" where arguments.count >= 3:
    #if RDMIG_LIBFUZZER
    LibFuzzer.run(target(named: arguments[2]), options: Array(arguments[3...]))
    #else
    fail("this rdmig-fuzz was built without libFuzzer: build it with Tests/fuzz/run.sh")
    #endif

default:
    fail("usage: rdmig-fuzz list | seeds DIR | run TARGET FILE|DIR... | fuzz TARGET [libFuzzer options]")
}

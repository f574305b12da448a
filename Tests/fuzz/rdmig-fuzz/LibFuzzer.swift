#if RDMIG_LIBFUZZER
#if canImport(Glibc)
import Glibc
#endif
import RdmigFuzzTargets

/// libFuzzer's entry for programs that keep their own `main` (compiler-rt's FuzzerDriver.cpp);
/// linked from libclang_rt.fuzzer by `-sanitize=fuzzer`.
@_silgen_name("LLVMFuzzerRunDriver")
private func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<Int32>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32
) -> Int32

enum LibFuzzer {
    /// The target the C callback runs; set once before libFuzzer starts, read only after.
    nonisolated(unsafe) private static var target: FuzzTarget = .controlFrame

    /// Hands the process to libFuzzer with `options` as its command line.
    static func run(_ chosen: FuzzTarget, options: [String]) -> Never {
        target = chosen
        var cArguments: [UnsafeMutablePointer<CChar>?] = ([CommandLine.arguments[0]] + options).map { strdup($0) }
        cArguments.append(nil)
        var argc = Int32(options.count + 1)
        let status = cArguments.withUnsafeMutableBufferPointer { buffer -> Int32 in
            var argv = buffer.baseAddress!
            return LLVMFuzzerRunDriver(&argc, &argv) { data, size in
                // A violated property is a crash to libFuzzer: it saves the input as an artifact.
                do {
                    try LibFuzzer.target.run(UnsafeRawBufferPointer(start: data, count: size))
                } catch {
                    fatalError("\(error)")
                }
                return 0
            }
        }
        exit(status)
    }
}
#endif

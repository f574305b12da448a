#if canImport(Glibc)
import Glibc
#endif

/// How a launched QEMU runs guest code (the choice of Tests/qemu-guest/qemu-lib.sh `qemu_accel_args`).
enum QEMUAccelerator: String, Sendable, CaseIterable {
    case kvm
    case tcg

    /// `auto` (or nil): KVM only where it is hardware virtualisation. /dev/kvm alone is not
    /// enough: on PVM hosts it exists without vmx/svm and a stock kernel cannot boot under it
    /// (`-cpu host` aborts "failed to set MSR 0x10a"; FACTS.md). A loaded kvm_intel or kvm_amd
    /// module is what says the CPU's own virtualisation is there.
    static func choose(_ requested: String?, kvmUsable: Bool = QEMUAccelerator.kvmUsable()) throws(RdmigCommandError) -> QEMUAccelerator {
        switch requested ?? "auto" {
        case "auto": return kvmUsable ? .kvm : .tcg
        case "kvm": return .kvm
        case "tcg": return .tcg
        case let other: throw RdmigCommandError("accelerator '\(other)': use auto, kvm or tcg")
        }
    }

    static func kvmUsable(root: String = "") -> Bool {
        guard access(root + "/dev/kvm", R_OK | W_OK) == 0 else { return false }
        return access(root + "/sys/module/kvm_intel", F_OK) == 0 || access(root + "/sys/module/kvm_amd", F_OK) == 0
    }

    /// QEMU's -accel and -cpu arguments.
    var arguments: [String] {
        switch self {
        case .kvm: return ["-accel", "kvm", "-cpu", "host"]
        // thread=multi: one host thread per vCPU (MTTCG), as the test scripts run it.
        case .tcg: return ["-accel", "tcg,thread=multi", "-cpu", "max"]
        }
    }
}

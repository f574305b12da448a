#if canImport(Glibc)
import Glibc
#endif
import CRDMA
import RdmigSystem
import Testing
@testable import RdmigTransport

@Suite struct VerbsRegistration {
    /// The soft RLIMIT_MEMLOCK as the message must print it.
    static func currentMemlockText() -> String {
        var limit = rlimit()
        #expect(getrlimit(__rlimit_resource_t(__RLIMIT_MEMLOCK.rawValue), &limit) == 0)
        if limit.rlim_cur == rlim_t.max { return "unlimited" }
        return ByteCount(UInt64(limit.rlim_cur)).humanReadable
    }

    @Test func aMemlockFailureNamesTheLimitItsValueAndTheFix() {
        for error in [ENOMEM, EPERM] {
            guard case .registrationFailed(let detail) = VerbsErrorMapping.registrationFailure(errno: error, length: 1 << 30) else {
                Issue.record("errno \(error) is not registrationFailed")
                continue
            }
            #expect(detail.contains("ibv_reg_mr of 1.00 GiB failed with \(SystemCallError.name(of: error))"), "\(detail)")
            #expect(detail.contains("RLIMIT_MEMLOCK) is \(Self.currentMemlockText())"), "\(detail)")
            #expect(detail.contains("LimitMEMLOCK") && detail.contains("ulimit -l") && detail.contains("CAP_IPC_LOCK"), "\(detail)")
        }
    }

    @Test func otherRegistrationFailuresSayWhatWasRefused() {
        guard case .registrationFailed(let invalid) = VerbsErrorMapping.registrationFailure(errno: EINVAL, length: 4096) else {
            Issue.record("EINVAL is not registrationFailed")
            return
        }
        #expect(invalid.contains("EINVAL") && invalid.contains("max MR size"))
        guard case .registrationFailed(let fault) = VerbsErrorMapping.registrationFailure(errno: EFAULT, length: 4096) else {
            Issue.record("EFAULT is not registrationFailed")
            return
        }
        #expect(fault.contains("not mapped memory"))
    }

    @Test func withdrawingARegistrationThisConnectionNeverMadeIsRefused() {
        let cache = RegistrationCache()
        let stranger = MemoryRegistration(address: 0x1000, length: 4096, localKey: 7, remoteKey: 7, access: .remoteWrite)
        do {
            try cache.deregister(stranger)
            Issue.record("deregistering an unknown registration succeeded")
        } catch {
            guard case .invalidWorkRequest(let detail) = error else {
                Issue.record("got \(error)")
                return
            }
            #expect(detail.contains("0x1000") && detail.contains("not registered on this connection"))
        }
        #expect(cache.count == 0)
    }
}

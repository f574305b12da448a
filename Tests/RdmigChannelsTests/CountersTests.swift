@testable import RdmigChannels
import Testing

@Suite struct ImmediateAndSendQueueCounters {
    @Test func immediatesCarryChannelFlagAndCounter() {
        let immediate = ImmediateValue.make(ChannelID(0x42), counter: (1 << 23) + 5, flag: true)
        #expect(ImmediateValue.channel(of: immediate) == ChannelID(0x42))
        #expect(ImmediateValue.hasFlag(immediate))
        #expect(ImmediateValue.counter(of: immediate) == 5)
        #expect(!ImmediateValue.hasFlag(ImmediateValue.make(.control, counter: 1)))
    }

    @Test func countersAreRebuiltAcrossTheirWrap() {
        let modulus: UInt64 = 1 << 23
        for reference: UInt64 in [0, 5, modulus - 3, modulus, 10 * modulus + 17, (1 << 40) - 2] {
            for delta: Int64 in [0, 1, 7, 1000, Int64(modulus / 2 - 1), -1, -1000] {
                guard Int64(reference) + delta >= 0 else { continue }
                let actual = UInt64(Int64(reference) + delta)
                let low = UInt32(actual % modulus)
                #expect(ImmediateValue.extend(low, near: reference) == actual, "reference \(reference) delta \(delta)")
            }
        }
    }

    @Test func workRequestIDsKeepChannelAndSequenceApart() {
        let id = WorkRequestID.make(.pages, (1 << 56) + 99)
        #expect(WorkRequestID.channel(of: id) == .pages)
        #expect(WorkRequestID.sequence(of: id) == 99)
    }

    @Test func oneRequestInEachIntervalIsSignalledAndTheOneFillingTheReservation() {
        var account = SendQueueAccount(capacity: 10, signalInterval: 4)
        var signalled: [UInt64] = []
        while account.hasRoom {
            let (sequence, signaled) = account.claim()
            if signaled { signalled.append(sequence) }
        }
        #expect(signalled == [3, 7, 9])
        #expect(account.outstanding == 10)
        // Completing the signalled request 7 retires 0...7.
        account.complete(sequence: 7)
        #expect(account.outstanding == 2)
        #expect(account.hasRoom)
        account.complete(sequence: 3)
        #expect(account.outstanding == 2)
        account.complete(sequence: 9)
        #expect(account.isIdle)
    }

    @Test func aForcedSignalRestartsTheInterval() {
        var account = SendQueueAccount(capacity: 100, signalInterval: 3)
        #expect(account.claim().signaled == false)
        #expect(account.claim(forceSignal: true).signaled == true)
        #expect(account.claim().signaled == false)
        #expect(account.claim().signaled == false)
        #expect(account.claim().signaled == true)
    }
}

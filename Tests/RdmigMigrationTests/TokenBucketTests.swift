import Testing
@testable import RdmigMigration

@Suite struct TokenBucketTests {
    @Test func tokensAccrueAtTheRateUpToTheCapacity() {
        var bucket = TokenBucket(rate: 1000, capacity: 500)
        bucket.refill(now: 0)
        #expect(bucket.tokens == 0)
        bucket.refill(now: 0.2)
        #expect(abs(bucket.tokens - 200) < 1e-9)
        let first = bucket.take(150)
        let second = bucket.take(100)
        #expect(first)
        #expect(!second)
        #expect(abs(bucket.secondsUntil(100) - 0.05) < 1e-9)
        bucket.refill(now: 10)
        #expect(bucket.tokens == 500)
    }

    @Test func restartForgetsTheTimeInBetween() {
        var bucket = TokenBucket(rate: 1000, capacity: 10_000)
        bucket.refill(now: 0)
        bucket.restart(now: 5)
        bucket.refill(now: 5.001)
        #expect(abs(bucket.tokens - 1) < 1e-6)
    }

    @Test func aZeroRateNeverFills() {
        var bucket = TokenBucket(rate: 0, capacity: 100)
        bucket.refill(now: 0)
        bucket.refill(now: 100)
        #expect(bucket.tokens == 0)
        #expect(bucket.secondsUntil(1) == .infinity)
        bucket.setRate(10, capacity: 5)
        bucket.refill(now: 101)
        #expect(bucket.tokens == 5)
    }
}

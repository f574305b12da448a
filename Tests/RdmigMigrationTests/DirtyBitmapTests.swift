import Testing
@testable import RdmigMigration

@Suite struct DirtyBitmapTests {
    @Test func setPagesAreIteratedInOrderAndCounted() {
        var bitmap = DirtyBitmap(pageCount: 200)
        for page in [199, 0, 63, 64, 65, 127, 128] { bitmap.insert(page) }
        #expect(bitmap.pages == [0, 63, 64, 65, 127, 128, 199])
        #expect(bitmap.count == 7)
        #expect(bitmap.contains(64))
        #expect(!bitmap.contains(66))
        bitmap.remove(64)
        #expect(bitmap.count == 6)
        #expect(!bitmap.isEmpty)
        bitmap.removeAll()
        #expect(bitmap.isEmpty)
        #expect(bitmap.pages.isEmpty)
    }

    @Test func runsMergeAcrossWordBoundaries() {
        var bitmap = DirtyBitmap(pageCount: 300)
        bitmap.insert(60..<70)      // crosses word 0/1
        bitmap.insert(100..<101)
        bitmap.insert(127..<193)    // crosses words 1/2/3
        bitmap.insert(299..<300)    // the last page
        #expect(bitmap.runs() == [60..<70, 100..<101, 127..<193, 299..<300])
        #expect(bitmap.count == 10 + 1 + 66 + 1)
    }

    @Test func runsAreSplitAtTheMaximumLength() {
        var bitmap = DirtyBitmap(pageCount: 1024)
        bitmap.insert(0..<1024)
        #expect(bitmap.runs(maximumLength: 512) == [0..<512, 512..<1024])
        #expect(bitmap.runs(maximumLength: 300) == [0..<300, 300..<600, 600..<900, 900..<1024])
    }

    @Test func fullWordsAndAlternatingBitsGiveTheRightRuns() {
        var bitmap = DirtyBitmap(pageCount: 128)
        bitmap.insert(0..<64)
        #expect(bitmap.runs() == [0..<64])
        var alternating = DirtyBitmap(pageCount: 8)
        for page in stride(from: 0, to: 8, by: 2) { alternating.insert(page) }
        #expect(alternating.runs() == [0..<1, 2..<3, 4..<5, 6..<7])
    }

    @Test func runsMatchANaiveScanOnRandomBitmaps() {
        var random: UInt64 = 12345
        for _ in 0..<50 {
            var bitmap = DirtyBitmap(pageCount: 777)
            var expected = [Bool](repeating: false, count: 777)
            for page in 0..<777 {
                random = random &* 6364136223846793005 &+ 1442695040888963407
                if random >> 61 < 3 {
                    bitmap.insert(page)
                    expected[page] = true
                }
            }
            var naive: [Range<Int>] = []
            var start: Int?
            for page in 0...777 {
                let set = page < 777 && expected[page]
                if set, start == nil { start = page }
                if !set, let begin = start {
                    naive.append(begin..<page)
                    start = nil
                }
            }
            #expect(bitmap.runs() == naive)
            #expect(bitmap.count == expected.filter { $0 }.count)
        }
    }

    @Test func fullBitmapHasExactlyPageCountBitsEvenWithAPartialLastWord() {
        let bitmap = DirtyBitmap.full(pageCount: 130)
        #expect(bitmap.count == 130)
        #expect(bitmap.runs() == [0..<130])
        var other = DirtyBitmap(pageCount: 130)
        other.formUnion(word: 2, with: ~0)
        #expect(other.count == 2)
    }

    @Test func unionCombinesBitmaps() {
        var a = DirtyBitmap(pageCount: 100)
        var b = DirtyBitmap(pageCount: 100)
        a.insert(1)
        b.insert(2)
        b.insert(1)
        a.formUnion(b)
        #expect(a.pages == [1, 2])
    }

    @Test func atomicBitmapDrainTakesMarksOnceAndReportsRuns() {
        let marks = AtomicPageBitmap(pageCount: 150)
        for page in [3, 4, 5, 63, 64, 149] { marks.mark(page) }
        var bitmap = DirtyBitmap(pageCount: 150)
        var runs: [Range<Int>] = []
        let drained = marks.drain(into: &bitmap) { (run: Range<Int>) throws(Never) in runs.append(run) }
        #expect(drained == 6)
        #expect(runs == [3..<6, 63..<65, 149..<150])
        #expect(bitmap.pages == [3, 4, 5, 63, 64, 149])
        var again = DirtyBitmap(pageCount: 150)
        #expect(marks.drain(into: &again) == 0)
        #expect(again.isEmpty)
    }

    @Test func intersectionAndSubtractionWorkWordByWord() {
        var a = DirtyBitmap(pageCount: 200)
        a.insert(0..<100)
        var b = DirtyBitmap(pageCount: 200)
        b.insert(60..<150)
        #expect(a.intersection(b).runs() == [60..<100])
        #expect(a.subtracting(b).runs() == [0..<60])
        #expect(b.subtracting(a).runs() == [100..<150])
    }
}

import Testing

@testable import RdmigDeviceState

@Suite struct MigrationStateMachine {
    @Test func directArcsAreOneStep() {
        #expect(MigrationArcs.path(from: .running, to: .preCopy) == [.preCopy])
        #expect(MigrationArcs.path(from: .preCopy, to: .stopCopy) == [.stopCopy])
        #expect(MigrationArcs.path(from: .stop, to: .resuming) == [.resuming])
        #expect(MigrationArcs.path(from: .running, to: .running) == [])
    }

    @Test func combinationArcsTakeTheShortestPathNotThroughSavingStates() {
        #expect(MigrationArcs.path(from: .running, to: .stopCopy) == [.stop, .stopCopy])
        #expect(MigrationArcs.path(from: .running, to: .resuming) == [.stop, .resuming])
        #expect(MigrationArcs.path(from: .preCopy, to: .stop) == [.running, .stop])
        #expect(MigrationArcs.path(from: .stopCopy, to: .running) == [.stop, .running])
        #expect(MigrationArcs.path(from: .resuming, to: .running) == [.stop, .running])
    }

    @Test func arcsTheUAPIForbidsHaveNoPath() {
        #expect(MigrationArcs.path(from: .stopCopy, to: .preCopy) == nil)
        #expect(MigrationArcs.path(from: .running, to: .error) == nil)
        #expect(MigrationArcs.path(from: .error, to: .running) == nil)
    }
}

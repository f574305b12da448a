#!/usr/bin/env bash
# Runs the in-process test suites under AddressSanitizer or ThreadSanitizer, each in its own
# build directory (.build-asan, .build-tsan: a full extra build, ~5 min on 2 cores).
#
#   Tests/fuzz/sanitizers.sh address|thread [extra swift test options]
#
# The suites: RdmigChannelsTests, RdmigTransportTests, RdmigMigrationTests,
# RdmigDeviceStateTests, RdmigSystemTests, RdmigFuzzTests and the QMP parsing tests. The
# multi-process and QEMU suites start the unsanitized `rdmig` binary and QEMU guests: slow
# under a sanitizer and mostly outside it. Suppression files (this directory) name only
# reports of the toolchain and test runner, each with its reason; see README.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
sanitizer="${1:?usage: sanitizers.sh address|thread [swift test options]}"
shift
case "$sanitizer" in
    address) scratch=.build-asan ;;
    thread) scratch=.build-tsan ;;
    *) echo "sanitizers.sh: address or thread, not '$sanitizer'" >&2; exit 2 ;;
esac
here="$PWD/Tests/fuzz"
export ASAN_OPTIONS="suppressions=$here/asan-suppressions.txt${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export LSAN_OPTIONS="suppressions=$here/lsan-suppressions.txt${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
export TSAN_OPTIONS="suppressions=$here/tsan-suppressions.txt${TSAN_OPTIONS:+:$TSAN_OPTIONS}"
exec swift test --sanitize="$sanitizer" --scratch-path "$scratch" \
    --filter 'RdmigChannelsTests|RdmigTransportTests|RdmigMigrationTests|RdmigDeviceStateTests|RdmigSystemTests|RdmigFuzzTests|RdmigQEMUTests.QMPValue' \
    "$@"

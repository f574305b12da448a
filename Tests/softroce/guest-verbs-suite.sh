# Runs inside the Soft-RoCE guest (busybox sh), started by verbs-suite.sh through run.sh: the
# steps that check rdmig's verbs backend on a real verbs device (rxe0), all in one boot:
# conformance (completion channel, then busy-poll), bandwidth against ib_write_bw, a paired
# migration over rxe.
# Every step runs even when an earlier one failed, so one run shows everything; the exit code
# is 0 only when every step passed.
#
# Usage: guest-verbs-suite.sh --large-transfer SIZE --total SIZE --iterations N [--rounds N]
#                             [--build LABEL] [--step-timeout S] [--step FILE]...
#   --large-transfer  the conformance suite's large-transfer case (rxe under TCG: ~100 MB/s)
#   --total           bytes `rdmig bench transport` moves; --iterations: ib_write_bw -n, the
#                     same bytes in 64 KiB messages; --rounds: how many times each runs
#                     (alternating; the medians are compared); --build: which rdmig build this
#                     is ("debug build", "release build"), for the ratio line
#   --step FILE       an extra step: a file in /job/bin (verbs-suite.sh copies it there), run
#                     with sh after the built-in steps; its exit code is its verdict
# Out:   "== step NAME" before and "-- step NAME: PASS|FAIL ..." after each step; the
#        conformance lines (PASS/FAIL/SKIP, "N passed, N failed, N skipped"); the ratio line
#        "verbs-vs-ib_write_bw: rdmig X MiB/s, ib_write_bw Y MiB/s, ratio Z ..."; the migration
#        line "migration over rxe: completed, verified, downtime X ms, total Y ms, N iterations
#        (...)" (only when it passed; else both sides' reports and logs); at the end
#        "verbs suite in the guest: N steps passed, N failed[: names]".

large_transfer=8MiB total=64MiB iterations=1024 rounds=3 step_timeout=180 extra_steps="" build="unknown build"
while [ $# -gt 0 ]; do
    case "$1" in
        --large-transfer) large_transfer=$2; shift 2 ;;
        --total) total=$2; shift 2 ;;
        --iterations) iterations=$2; shift 2 ;;
        --rounds) rounds=$2; shift 2 ;;
        --build) build=$2; shift 2 ;;
        --step-timeout) step_timeout=$2; shift 2 ;;
        --step) extra_steps="$extra_steps $2"; shift 2 ;;
        *) echo "guest-verbs-suite.sh: unknown argument '$1'"; exit 2 ;;
    esac
done
ip=$RDMIG_GUEST_IP
device=$RDMIG_RDMA_DEVICE
# The IPv6 conformance case needs an IPv6 address on the RDMA netdev: eth0's link-local one,
# with its zone (rdma_cm cannot use ::1). The kernel adds it when the link comes up, after
# duplicate address detection, so wait for it briefly.
ipv6=""
for _ in $(seq 1 50); do
    line=$(ip -6 addr show dev eth0 scope link 2>/dev/null | grep inet6 | head -1)
    case "$line" in
        *tentative*|"") sleep 0.1 ;;
        *) ipv6=$(echo "$line" | sed 's/.*inet6 \([^/]*\)\/.*/\1/'); break ;;
    esac
done
ipv6_option=""
[ -n "$ipv6" ] && ipv6_option="--ipv6-host $ipv6%eth0"

passed=0 failed=0 failed_names=""
uptime_now() { cut -d' ' -f1 /proc/uptime; }

# step NAME COMMAND...: runs one step and prints its verdict. The programs inside run under
# `timeout`: a hung rdma_cm call must not eat the whole guest's budget (busybox's timeout runs
# programs, not shell functions, hence one per program).
step() {
    name=$1
    shift
    echo "== step $name"
    started=$(uptime_now)
    "$@"
    status=$?
    elapsed=$(awk -v a="$started" -v b="$(uptime_now)" 'BEGIN {printf "%.1f", b - a}')
    if [ "$status" = 0 ]; then
        passed=$((passed + 1))
        echo "-- step $name: PASS ($elapsed s)"
    else
        failed=$((failed + 1))
        failed_names="$failed_names $name"
        why="exit $status"
        [ "$status" = 143 ] && why="a program was killed after the timeout of $step_timeout s"
        echo "-- step $name: FAIL ($why, $elapsed s)"
    fi
}

# The transport conformance suite from the rdmig binary, through rdma_cm on the guest's IP:
# once waiting on completion channels (the default), once busy-polling the CQs (both peers'
# pollers spin on the guest's 2 vCPUs, beside rxe's own kernel work).
conformance() {
    timeout "$step_timeout" rdmig selftest transport --backend verbs --host "$ip" --large-transfer "$large_transfer" $ipv6_option
}
conformance_busy_poll() {
    timeout "$step_timeout" rdmig selftest transport --backend verbs --host "$ip" --large-transfer "$large_transfer" \
        --completion busy-poll $ipv6_option
}

# One `rdmig bench transport --runs 1` (verbs, 64 KiB WRITEs); sets rdmig_rate and pump_rate
# (bytes per second: rdmig, and the plain TCP pump it measures as its baseline).
rdmig_bench_once() {
    timeout "$step_timeout" rdmig bench transport --backend verbs --host "$ip" --message-size 64KiB \
        --total "$total" --runs 1 --json >/tmp/bench.json 2>/tmp/bench.err
    status=$?
    [ "$1" = 1 ] || [ "$status" != 0 ] && cat /tmp/bench.json /tmp/bench.err
    [ "$status" = 0 ] || { echo "rdmig bench transport failed (exit $status)"; return 1; }
    # `"bytes-per-second" :` (with both quotes) matches neither the baseline's key nor the samples'.
    rdmig_rate=$(sed -n 's/^ *"bytes-per-second" : \([-+0-9.eE]*\).*/\1/p' /tmp/bench.json)
    pump_rate=$(sed -n 's/^ *"baseline-bytes-per-second" : \([-+0-9.eE]*\).*/\1/p' /tmp/bench.json)
    [ -n "$rdmig_rate" ] && [ -n "$pump_rate" ] || { echo "no bytes-per-second in rdmig's JSON"; return 1; }
}

# One ib_write_bw server + client over rdma_cm on the guest's IP; sets ib_rate (MiB/s).
ib_write_bw_pair() {
    # perftest's defaults otherwise (TX depth 128, as rdmig's --queue-depth); -F: TCG's CPU
    # frequency looks inconsistent to perftest, which would refuse to run.
    timeout "$step_timeout" ib_write_bw -d "$device" -R -F -s 65536 -n "$iterations" >/tmp/ib-server.log 2>&1 &
    server=$!
    # The server needs a moment under TCG before it listens; perftest's client does not retry.
    attempt=0
    until timeout "$step_timeout" ib_write_bw -d "$device" -R -F -s 65536 -n "$iterations" "$ip" >/tmp/ib-client.log 2>&1; do
        attempt=$((attempt + 1))
        if [ $attempt -ge 20 ] || ! kill -0 $server 2>/dev/null; then
            echo "ib_write_bw client failed; client:"; cat /tmp/ib-client.log
            echo "server:"; cat /tmp/ib-server.log
            kill $server 2>/dev/null
            return 1
        fi
        sleep 0.5
    done
    wait $server || { echo "ib_write_bw server failed:"; cat /tmp/ib-server.log; return 1; }
    # perftest's result row: #bytes #iterations BW-peak BW-average MsgRate.
    ib_rate=$(awk '$1 == 65536 && NF >= 5 {print $4}' /tmp/ib-client.log | tail -1)
    [ -n "$ib_rate" ] || { echo "no bandwidth row in ib_write_bw's output:"; cat /tmp/ib-client.log; return 1; }
}

# perftest times with rdtsc and converts cycles with a CPU frequency it samples against
# gettimeofday (get_cpu_mhz, get_clock.c). When the host preempts the guest during that
# sampling, the fit is poor ("Correlation coefficient r^2 < 0.9"), the frequency is taken as 0
# and every rate prints as 0.00: such a run measured nothing and is repeated.
ib_write_bw_once() {
    tries=0
    while :; do
        ib_write_bw_pair || return 1
        tries=$((tries + 1))
        [ "$1" = 1 ] && [ $tries = 1 ] && cat /tmp/ib-client.log
        awk -v r="$ib_rate" 'BEGIN { exit !(r > 0) }' && return 0
        if [ $tries -ge 3 ]; then
            echo "ib_write_bw reported 0 MiB/s $tries times (its clock calibration failed each time):"
            cat /tmp/ib-client.log
            return 1
        fi
        echo "ib_write_bw reported 0 MiB/s: $(grep -m1 'Correlation' /tmp/ib-client.log || echo 'its clock calibration failed'); measuring again"
    done
}

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# rdmig bench transport and ib_write_bw on the same device, same message size and bytes, one
# after the other, in --rounds alternating rounds (a shared host's noise hits both alike); the
# medians give the ratio. Prints the first round's full outputs, then one line per round.
bandwidth_against_ib_write_bw() {
    : >/tmp/rdmig.rates; : >/tmp/pump.rates; : >/tmp/ib.rates
    round=1
    while [ $round -le "$rounds" ]; do
        rdmig_bench_once $round || return 1
        ib_write_bw_once $round || return 1
        # perftest's "MB/sec" is 2^20 bytes per second (format_factor 0x100000 in
        # print_report_bw, perftest_resources.c); rdmig's JSON has bytes per second: all in MiB/s.
        awk -v r="$rdmig_rate" 'BEGIN { printf "%.3f\n", r / 1048576 }' >>/tmp/rdmig.rates
        awk -v p="$pump_rate" 'BEGIN { printf "%.3f\n", p / 1048576 }' >>/tmp/pump.rates
        echo "$ib_rate" >>/tmp/ib.rates
        echo "round $round: rdmig $(tail -1 /tmp/rdmig.rates) MiB/s (plain TCP pump $(tail -1 /tmp/pump.rates) MiB/s), ib_write_bw $ib_rate MiB/s"
        round=$((round + 1))
    done
    # A shared host only ever slows the guest down, so the best round is printed as well.
    awk -v m="$(median </tmp/rdmig.rates)" -v p="$(median </tmp/pump.rates)" -v i="$(median </tmp/ib.rates)" \
        -v bm="$(sort -n /tmp/rdmig.rates | tail -1)" -v bi="$(sort -n /tmp/ib.rates | tail -1)" \
        -v total="$total" -v rounds="$rounds" -v build="$build" 'BEGIN {
        printf "verbs-vs-ib_write_bw: rdmig %.1f MiB/s, ib_write_bw %.1f MiB/s, ratio %.2f (medians of %d rounds of %s in 64 KiB writes; best round each: %.1f and %.1f MiB/s, ratio %.2f; rdmig %s)\n", m, i, m / i, rounds, total, bm, bi, bm / bi, build
        printf "verbs-vs-tcp-pump: rdmig %.1f MiB/s, plain TCP pump in the guest %.1f MiB/s, ratio %.2f (medians)\n", m, p, m / p
    }'
}

# A paired native migration over rxe0: `rdmig dest` and `rdmig source` in the guest, both on
# $ip with --backend verbs, so every channel (control SEND/RECV with WRITE_WITH_IMM credits,
# byte stream, page WRITEs into the exported guest memory) runs on the verbs backend. A small
# synthetic guest (128 MiB, 16 MiB/s dirtied in 32 MiB, an ib-sw VF with 100 QPs): rxe under
# TCG moves ~30-110 MiB/s. Pinning 128 MiB (mlock, and rxe's registration) does not depend on
# guest-init.sh lifting RLIMIT_MEMLOCK: the guest runs as root with CAP_IPC_LOCK, which both
# bypass (checked: the same migration passes after `ulimit -l 64`). Passes only when both
# exit 0 and both JSON reports say "status" : "completed" and "verified" : true.
migration_report_field() { # FILE KEY: a top-level field of a pretty-printed JSON report
    sed -n "s/^  \"$2\" : \"\{0,1\}\([^\",]*\)\"\{0,1\},\{0,1\}\$/\1/p" "$1" | head -1
}
migration() {
    rm -f /tmp/migration.key /tmp/dest.json /tmp/dest.err /tmp/source.json /tmp/source.err
    rdmig keygen /tmp/migration.key >/dev/null || { echo "rdmig keygen failed"; return 1; }
    timeout "$step_timeout" rdmig dest --listen "$ip:0" --backend verbs --json --key-file /tmp/migration.key -v \
        >/tmp/dest.json 2>/tmp/dest.err &
    dest=$!
    # dest prints "rdmig dest: listening on IP:PORT (...)" once it listens; port 0 picks the port.
    waited=0
    until port=$(sed -n 's/^rdmig dest: listening on [^ ]*:\([0-9]*\) .*/\1/p' /tmp/dest.err) && [ -n "$port" ]; do
        waited=$((waited + 1))
        if [ $waited -gt 300 ] || ! kill -0 $dest 2>/dev/null; then
            echo "rdmig dest did not start listening:"; cat /tmp/dest.err
            kill $dest 2>/dev/null
            return 1
        fi
        sleep 0.1
    done
    timeout "$step_timeout" rdmig source --connect "$ip:$port" --backend verbs --guest-size 128MiB \
        --dirty-rate 16MiB/s --working-set 32MiB --vf ib-sw:qps=100 --json --key-file /tmp/migration.key -v \
        >/tmp/source.json 2>/tmp/source.err
    source_status=$?
    wait $dest
    dest_status=$?
    verdict=0
    for side in source dest; do
        eval "status=\$${side}_status"
        side_status=$(migration_report_field /tmp/$side.json status)
        side_verified=$(migration_report_field /tmp/$side.json verified)
        if [ "$status" != 0 ] || [ "$side_status" != completed ] || [ "$side_verified" != true ]; then
            echo "rdmig $side: exit $status, status ${side_status:-missing}, verified ${side_verified:-missing}; its report and log:"
            cat /tmp/$side.json; tail -n 40 /tmp/$side.err
            verdict=1
        fi
    done
    [ $verdict = 0 ] || return 1
    # The source's report has the pass count and times (ms, as MigrationReport writes them).
    # ib_write_bw's median from the bandwidth step (when it ran) puts pre-copy and the link
    # burst against what the device moves (issue 14's Soft-RoCE target).
    ib=$( [ -s /tmp/ib.rates ] && median </tmp/ib.rates || echo 0)
    awk -v d="$(migration_report_field /tmp/source.json downtime)" -v t="$(migration_report_field /tmp/source.json total-time)" \
        -v s="$(migration_report_field /tmp/source.json setup-time)" -v n="$(migration_report_field /tmp/source.json iterations)" \
        -v b="$(migration_report_field /tmp/source.json transferred)" -v c="$(migration_report_field /tmp/source.json channels)" \
        -v l="$(migration_report_field /tmp/source.json link-bandwidth)" -v p="$(migration_report_field /tmp/source.json precopy-bandwidth)" \
        -v lb="$(migration_report_field /tmp/source.json downtime-lower-bound)" -v ib="$ib" -v build="$build" 'BEGIN {
        printf "migration over rxe: completed, verified, downtime %.1f ms, total %.0f ms, %d iterations (setup %.0f ms, %.1f MiB sent; 128 MiB guest, 16 MiB/s dirtied, ib-sw VF; rdmig %s)\n", d, t, n, s, b / 1048576, build
        printf "migration over rxe: %d page channels, link %.1f MiB/s, pre-copy %.1f MiB/s, lower bound %.1f ms", c, l / 1048576, p / 1048576, lb
        if (ib > 0) printf "; against ib_write_bw %.1f MiB/s: link %.2f, pre-copy %.2f", ib, l / 1048576 / ib, p / 1048576 / ib
        printf "\n"
    }'
}

echo "verbs suite in the guest: $device on $ip, kernel $(uname -r), $(grep -c ^processor /proc/cpuinfo) vCPUs"
step conformance conformance
step conformance-busy-poll conformance_busy_poll
step bandwidth bandwidth_against_ib_write_bw
step migration migration
for extra in $extra_steps; do
    step "$extra" timeout "$step_timeout" sh "/job/bin/$extra"
done

if [ "$failed" = 0 ]; then
    echo "verbs suite in the guest: $passed steps passed, 0 failed"
    exit 0
fi
echo "verbs suite in the guest: $passed steps passed, $failed failed:$failed_names"
exit 1

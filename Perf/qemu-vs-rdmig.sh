#!/usr/bin/env bash
# QEMU's direct `tcp:` migration against the same migration through rdmig's QEMU mode
# (issue 6): the self-checking test guest (Tests/qemu-guest) with 1 GiB RAM and a 256 MiB
# working set dirtied at 0, 50 and 200 MB/s; the two paths interleaved run by run, RUNS runs
# each, with the same raised max-bandwidth and the same downtime-limit. Records medians of
# QEMU's total-time and downtime, and of the downtime from the source's STOP event to the
# destination's RESUME event (both seen on the script's own QMP sockets, so measured the same
# way for both paths), into Perf/README.md between the markers below; the records (one JSON
# line per migration) go to Perf/results/qemu-vs-rdmig.jsonl.
#   Perf/qemu-vs-rdmig.sh [RUNS]     (default 3; ~5-10 s per migration under TCG)
#   Perf/qemu-vs-rdmig.sh --table-from FILE   (the table again from a run's record lines on stderr)
# Env: RATES="0 50 200" (MB/s), MEMORY=1024, WS=256 (MiB), MAX_BANDWIDTH (bytes/s, default
# 10 GiB/s: QEMU's 128 MiB/s default throttles), DOWNTIME_LIMIT (ms, default 50: rdmig's),
# PREALLOC=1: destination QEMUs with -mem-prealloc (their own table, *-prealloc markers and
# records). Without it the destination faults its RAM in while it loads the stream, and on
# these machines that (with THP compaction) is most of the time and most of the spread.
# PATHS="direct rdmig" (default) also takes two reference paths that show what any relay costs
# on this host: `unix` (QEMU to QEMU over one socket pair: no relay, no TCP) and `splice` (a
# zero-copy relay in this script: socket pair -> splice -> pipe -> loopback TCP -> pipe ->
# socket pair, one thread per side; the kernel moves page references, nothing is copied);
# `pipe` (QEMU to QEMU over one pipe, no relay).
# Every migration is checked: completed, destination running, its heartbeats errors=0.
set -euo pipefail
cd "$(dirname "$0")/.."
results=$(mktemp)
suffix=""
[ "${PREALLOC:-0}" = 1 ] && suffix="-prealloc"
if [ "${1:-}" = "--table-from" ]; then
    grep '^{"path"' "$2" >"$results"
    runs=$(python3 -c 'import json,sys; print(max(json.loads(l)["run"] for l in open(sys.argv[1])) + 1)' "$results")
else
runs=${1:-3}
swift build -c release --product rdmig >/dev/null
Tests/qemu-guest/install-qemu.sh >/dev/null
Tests/qemu-guest/build-image.sh >/dev/null
RUNS=$runs RESULTS=$results RDMIG=.build/release/rdmig python3 - <<'PY'
import fcntl, json, os, re, resource, shutil, socket, statistics, subprocess, sys, tempfile, threading, time
sys.path.insert(0, "Tests/qemu-guest")
from qmp import QMP

runs = int(os.environ["RUNS"])
rates = [float(r) for r in os.environ.get("RATES", "0 50 200").split()]
memory = int(os.environ.get("MEMORY", "1024"))
ws = int(os.environ.get("WS", "256"))
max_bandwidth = int(os.environ.get("MAX_BANDWIDTH", str(10 << 30)))
downtime_limit = int(os.environ.get("DOWNTIME_LIMIT", "50"))
rdmig = os.environ["RDMIG"]
prealloc = os.environ.get("PREALLOC", "0") == "1"
key = os.path.join(tempfile.mkdtemp(), "psk")
subprocess.run([rdmig, "keygen", key], check=True, capture_output=True)
HEARTBEAT = re.compile(r"rdmig-guest: heartbeat n=(\d+) written=(\d+) errors=(\d+)")

def beats(path):
    try:
        return [tuple(map(int, m.groups())) for m in HEARTBEAT.finditer(open(path, errors="replace").read())]
    except FileNotFoundError:
        return []

def wait_beats(path, count, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = beats(path)
        if len(found) >= count:
            return found
        time.sleep(0.1)
    raise TimeoutError(f"{count} heartbeats in {path} within {timeout} s")

def start(name, rate, incoming):
    command = ["Tests/qemu-guest/run-guest.sh", "--name", name, "--memory", str(memory), "--ws", str(ws),
               "--rate", str(rate), "--hb", "500"] + (["--incoming"] if incoming else []) + (["--prealloc"] if incoming and prealloc else [])
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

def children_cpu():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime

def stamp(event):
    return event["timestamp"]["seconds"] + event["timestamp"]["microseconds"] / 1e6

def stop(guest):
    try:
        os.kill(int(guest["RDMIG_PID"]), 9)
    except ProcessLookupError:
        pass
    shutil.rmtree(guest["RDMIG_RUN_DIR"], ignore_errors=True)

def qemu_migration(sq, dq, outgoing, incoming):
    """QEMU migrating by itself, with the same settings on every path: `outgoing` and
    `incoming` are URIs, or descriptors that are passed with getfd (and closed here)."""
    caps = [{"capability": "events", "state": True}]
    dq.command("migrate-set-capabilities", {"capabilities": caps})
    if isinstance(incoming, int):
        dq.command("getfd", {"fdname": "incoming"}, fds=[incoming]); os.close(incoming)
        incoming = "fd:incoming"
    dq.command("migrate-incoming", {"uri": incoming})
    sq.command("migrate-set-capabilities", {"capabilities": caps})
    sq.command("migrate-set-parameters", {"max-bandwidth": max_bandwidth, "downtime-limit": downtime_limit})
    if isinstance(outgoing, int):
        sq.command("getfd", {"fdname": "outgoing"}, fds=[outgoing]); os.close(outgoing)
        outgoing = "fd:outgoing"
    sq.command("migrate", {"uri": outgoing})
    deadline = time.monotonic() + 120
    while True:
        info = sq.command("query-migrate")
        if info.get("status") in ("completed", "failed", "cancelled") or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    if info.get("status") != "completed":
        raise RuntimeError(f"migration {info.get('status')}: {info.get('error-desc', '')}")
    # Wait for the destination's own `completed` before cont, as rdmig does.
    dq.wait_event("MIGRATION", 60, lambda e: e["data"]["status"] == "completed")
    dq.command("cont")
    return info

def direct(src, dst, sq, dq):
    port = socket.socket(); port.bind(("127.0.0.1", 0)); number = port.getsockname()[1]; port.close()
    return qemu_migration(sq, dq, f"tcp:127.0.0.1:{number}", f"tcp:127.0.0.1:{number}")

F_SETPIPE_SZ = 1031

def unix_pair(src, dst, sq, dq):
    # No relay at all: what QEMU's two ends of a socket pair cost, for scale.
    a, b = socket.socketpair()
    return qemu_migration(sq, dq, a.detach(), b.detach())

def pipe_only(src, dst, sq, dq):
    # No relay either: QEMU to QEMU over one pipe (1 MiB), to compare with the socket pair.
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, F_SETPIPE_SZ, 1 << 20)
    return qemu_migration(sq, dq, write_end, read_end)

def splice_relay(src, dst, sq, dq):
    # The cheapest relay found here: the kernel moves page references from QEMU's socket pair
    # through a pipe into a loopback TCP connection and out again; no byte is copied by it.
    listener = socket.socket(); listener.bind(("127.0.0.1", 0)); listener.listen(1)
    up = socket.create_connection(listener.getsockname()); down, _ = listener.accept(); listener.close()
    source_qemu, source_relay = socket.socketpair()
    dest_relay, dest_qemu = socket.socketpair()
    cpu = []
    def pump(reader, writer, done):
        pipe_read, pipe_write = os.pipe()
        fcntl.fcntl(pipe_write, F_SETPIPE_SZ, 1 << 20)
        try:
            while True:
                count = os.splice(reader, pipe_write, 1 << 20)
                if count == 0:
                    break
                while count > 0:
                    moved = os.splice(pipe_read, writer, count)
                    if moved == 0:
                        raise RuntimeError("splice relay: writer closed")
                    count -= moved
        except OSError:
            pass  # the migration's own status says what happened
        finally:
            done()
            os.close(pipe_read); os.close(pipe_write)
            cpu.append(time.thread_time())
    threads = [threading.Thread(target=pump, args=(source_relay.fileno(), up.fileno(), lambda: up.shutdown(socket.SHUT_WR))),
               threading.Thread(target=pump, args=(down.fileno(), dest_relay.fileno(), lambda: dest_relay.shutdown(socket.SHUT_WR)))]
    for thread in threads:
        thread.start()
    try:
        info = qemu_migration(sq, dq, source_qemu.detach(), dest_qemu.detach())
    finally:
        for thread in threads:
            thread.join(30)
        for end in (source_relay, dest_relay, up, down):
            end.close()
    info["relay-cpu"] = sum(cpu)
    return info

def through_rdmig(src, dst):
    errors = tempfile.NamedTemporaryFile(delete=False)
    dest = subprocess.Popen([rdmig, "dest", "--qemu-qmp", dst["RDMIG_QMP2"], "--listen", "127.0.0.1:0", "--key-file", key,
                             "--json"], stdout=subprocess.DEVNULL, stderr=errors)
    port = None
    for _ in range(300):
        match = re.search(r"listening on 127\.0\.0\.1:(\d+)", open(errors.name).read())
        if match:
            port = match.group(1); break
        time.sleep(0.05)
    if port is None:
        dest.kill()
        raise RuntimeError("rdmig dest did not listen: " + open(errors.name).read())
    source = subprocess.run([rdmig, "source", "--qemu-qmp", src["RDMIG_QMP2"], "--connect", f"127.0.0.1:{port}",
                             "--key-file", key, "--json", "--max-bandwidth", str(max_bandwidth),
                             "--downtime-limit", f"{downtime_limit}ms"], capture_output=True, text=True, timeout=180)
    dest.wait(timeout=60)
    report = json.loads(source.stdout)
    if report.get("status") != "completed":
        raise RuntimeError(f"rdmig: {report.get('error')}")
    qemu = report["qemu"]
    return {"total-time": qemu["total-time-milliseconds"], "downtime": qemu["downtime-milliseconds"],
            "ram": {"transferred": qemu.get("transferred-bytes", 0)}, "rdmig-wall": report["wall-time-milliseconds"],
            "source-relay-cpu": (report.get("relay") or {}).get("cpu-milliseconds")}

paths = os.environ.get("PATHS", "direct rdmig").split()
if "direct" not in paths or any(path not in ("direct", "rdmig", "unix", "pipe", "splice") for path in paths):
    sys.exit(f"PATHS must name direct and any of rdmig, unix, pipe, splice: {paths}")
for run in range(runs):
    for rate in rates:
        # Interleaved: direct and rdmig alternate within each rate and run, first one then the other.
        order = paths if run % 2 == 0 else paths[::-1]
        for path in order:
            name = f"qvr{os.getpid()}-{path}-{int(rate)}-{run}"
            src = start(name + "-src", rate, False)
            dst = start(name + "-dst", rate, True)
            record = {"path": path, "rate": rate, "run": run}
            try:
                wait_beats(src["RDMIG_SERIAL"], 2, 120)
                qemus = [int(src["RDMIG_PID"]), int(dst["RDMIG_PID"])]
                qemu_before, rdmig_before = sum(map(cpu_seconds, qemus)), children_cpu()
                with QMP(src["RDMIG_QMP"]) as sq, QMP(dst["RDMIG_QMP"]) as dq:
                    info = {"direct": lambda: direct(src, dst, sq, dq), "rdmig": lambda: through_rdmig(src, dst),
                            "unix": lambda: unix_pair(src, dst, sq, dq), "pipe": lambda: pipe_only(src, dst, sq, dq), "splice": lambda: splice_relay(src, dst, sq, dq)}[path]()
                    # CPU seconds both QEMUs and (through rdmig) both services used, to see
                    # what the relay costs on these shared cores.
                    qemu_cpu, rdmig_cpu = sum(map(cpu_seconds, qemus)) - qemu_before, children_cpu() - rdmig_before
                    stop_event = sq.wait_event("STOP", 30)
                    resume_event = dq.wait_event("RESUME", 30)
                    status = dq.command("query-status")["status"]
                last_source = beats(src["RDMIG_SERIAL"])[-1]
                after = wait_beats(dst["RDMIG_SERIAL"], 2, 60)
                ok = status == "running" and all(b[2] == 0 for b in after) and after[0][0] > last_source[0]
                record.update(status="completed" if ok else f"check failed: {status} {after[-1]}",
                              total=info["total-time"], downtime=info["downtime"],
                              stop_resume=(stamp(resume_event) - stamp(stop_event)) * 1000,
                              transferred=info.get("ram", {}).get("transferred", 0),
                              qemu_cpu=round(qemu_cpu, 3), rdmig_cpu=round(info.get("relay-cpu", rdmig_cpu), 3))
                if info.get("source-relay-cpu") is not None:
                    # The source service's own CPU while it relayed (no process start in it).
                    record["source_relay_cpu"] = round(info["source-relay-cpu"] / 1000, 3)
            except Exception as error:
                record.update(status=f"failed: {error}")
            finally:
                stop(src); stop(dst)
            print(json.dumps(record), file=sys.stderr, flush=True)
            with open(os.environ["RESULTS"], "a") as out:
                print(json.dumps(record), file=out)
PY
cp "$results" "Perf/results/qemu-vs-rdmig$suffix.jsonl"
fi

machine="$(nproc) cores, Linux $(uname -r), QEMU $(Tests/qemu-guest/install-qemu.sh --env | sed -n 's/.*RDMIG_QEMU_VERSION=\([^ ]*\).*/\1/p') under TCG"
table=$(RESULTS=$results MACHINE="$machine" RUNS=$runs PREALLOC=${PREALLOC:-0} python3 - <<'PY'
import json, os, statistics
records = [json.loads(line) for line in open(os.environ["RESULTS"]) if line.strip()]
def median(values):
    return statistics.median(values) if values else float("nan")
labels = {"direct": "QEMU tcp:", "unix": "QEMU fd: socket pair, no relay (reference)",
          "pipe": "QEMU fd: pipe, no relay (reference)",
          "splice": "zero-copy splice relay + TCP (reference)", "rdmig": "rdmig"}
present = [path for path in labels if any(r["path"] == path for r in records)]
print(f"Measured {__import__('datetime').date.today()} on {os.environ['MACHINE']}: 1 GiB guest, 256 MiB working set, "
      f"max-bandwidth 10 GiB/s and downtime-limit 50 ms on every path, paths interleaved, "
      f"median of {os.environ['RUNS']} runs each (rdmig: release build, tcp backend over loopback); "
      + ("destination QEMUs with -mem-prealloc. " if os.environ["PREALLOC"] == "1"
         else "destination QEMUs as QEMU starts them (RAM faulted in while loading). ")
      + "total/downtime: QEMU's own query-migrate figures; STOP→RESUME: source STOP to destination RESUME event; "
      "CPU: seconds both QEMUs / the relay (both rdmig services, or the splice relay's two threads) used during "
      "the migration; paired: the median of path / direct over the runs' back-to-back pairs, which the host's "
      "drift between runs does not skew.")
print()
print("| dirty rate | path | completed | total time | downtime (QEMU) | STOP→RESUME | CPU QEMUs / relay | / direct total (medians; paired) |")
print("|---|---|---|---|---|---|---|---|")
for rate in sorted({r["rate"] for r in records}):
    direct = {r["run"]: r["total"] for r in records
              if r["rate"] == rate and r["path"] == "direct" and r["status"] == "completed"}
    direct_median = median(list(direct.values()))
    for path in present:
        group = [r for r in records if r["rate"] == rate and r["path"] == path]
        good = [r for r in group if r["status"] == "completed"]
        ratio = ""
        if path != "direct" and good and direct:
            pairs = [r["total"] / direct[r["run"]] for r in good if direct.get(r["run"])]
            ratio = f"{median([r['total'] for r in good]) / direct_median:.2f}; {median(pairs):.2f}"
        print(f"| {rate:g} MB/s | {labels[path]} | {len(good)}/{len(group)} | "
              f"{median([r['total'] for r in good]):.0f} ms | {median([r['downtime'] for r in good]):.0f} ms | "
              f"{median([r['stop_resume'] for r in good]):.1f} ms | "
              f"{median([r.get('qemu_cpu', float('nan')) for r in good]):.2f} / {median([r.get('rdmig_cpu', 0) for r in good]):.2f} s | {ratio} |")
PY
)
python3 - "$table" "$suffix" <<'PY'
import re, sys
path = "Perf/README.md"
text = open(path).read()
begin, end = f"<!-- qemu-vs-rdmig{sys.argv[2]}:begin -->", f"<!-- qemu-vs-rdmig{sys.argv[2]}:end -->"
block = begin + "\n" + sys.argv[1] + "\n" + end
if begin in text:
    text = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: block, text, flags=re.S)
else:
    text = text.rstrip("\n") + "\n\n## QEMU direct tcp: vs rdmig QEMU mode (Perf/qemu-vs-rdmig.sh)\n\n" + block + "\n"
open(path, "w").write(text)
PY
echo "$table"

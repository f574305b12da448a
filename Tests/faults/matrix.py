#!/usr/bin/env python3
"""The fault matrix: phases of a migration x faults, each cell a real paired migration between
two network namespaces joined by a veth pair (the source in one, the destination in the
other, so the tcp backend crosses a real link: not loopback, so it is encrypted too).

Impairment cells (delay 50 ms, loss 1 % and 5 %, reordering) run a whole migration through
Perf/delay-line.c instead of veth (every phase impaired at once): it must complete verified or
fail with its reason, the guest on the source.

Each cell starts `rdmig dest` and `rdmig source` (the source with RDMIG_FAULT=announce, which
prints `rdmig phase: NAME` as the migration reaches each phase), strikes when the phase is
reached, and checks:
  - never two running copies, and a copy wherever a surviving process holds the guest
    (running, or paused and reported as such: `unknown (paused on the source ...)`);
    a SIGKILLed process takes its own copy with it (the synthetic guest lives in it);
  - a completed migration is verified;
  - the exit codes are the documented ones (0 completed, 1 failed, 3 unknown, 128+signal);
  - nothing hangs (every process ends within its bound).

Usage (root; debug build of rdmig, the only one with the fault hook):
  Tests/faults/matrix.py --output Tests/faults/RESULTS.md   # the full matrix, ~15 min
  Tests/faults/matrix.py --quick          # the CI subset (a few cells)
  Tests/faults/matrix.py --cells after-ready:kill-dest,stop-and-copy:cut-5s,all:loss-1%
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

PHASES = ["handshake", "early-precopy", "late-precopy", "stop-and-copy", "after-ready", "after-commit", "after-resumed"]
FAULTS = ["kill-source", "kill-dest", "term-source", "term-dest", "int-source", "int-dest", "cut-5s", "cut-60s"]
QUICK = ["late-precopy:term-source", "after-ready:kill-dest", "stop-and-copy:cut-5s", "after-commit:cut-5s"]
# Impairments of the whole link, every phase at once: (one-way delay µs, loss ‰, reordering ‰)
# through Perf/delay-line.c between the namespaces (this kernel has no sch_netem).
IMPAIRMENTS = {"delay-50ms": (50000, 0, 0), "loss-1%": (0, 10, 0), "loss-5%": (0, 50, 0), "reorder-5%": (200, 0, 50)}

NS_SOURCE, NS_DEST = "rdmig-fm-src", "rdmig-fm-dst"
LINK_SOURCE, LINK_DEST = "rdmig-fm-a", "rdmig-fm-b"
ADDR_SOURCE, ADDR_DEST = "10.77.0.1", "10.77.0.2"
PORT = 7600
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def sh(*args, check=True):
    return subprocess.run(args, check=check, capture_output=True, text=True)


def setup_network():
    teardown_network()
    sh("ip", "netns", "add", NS_SOURCE)
    sh("ip", "netns", "add", NS_DEST)
    sh("ip", "link", "add", LINK_SOURCE, "type", "veth", "peer", "name", LINK_DEST)
    sh("ip", "link", "set", LINK_SOURCE, "netns", NS_SOURCE)
    sh("ip", "link", "set", LINK_DEST, "netns", NS_DEST)
    for ns, link, addr in [(NS_SOURCE, LINK_SOURCE, ADDR_SOURCE), (NS_DEST, LINK_DEST, ADDR_DEST)]:
        sh("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", link)
        sh("ip", "-n", ns, "link", "set", link, "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")


def setup_line(impairment, workdir):
    """The namespaces joined by the impairing delay line instead of veth; returns its process."""
    teardown_network()
    sh("ip", "netns", "add", NS_SOURCE)
    sh("ip", "netns", "add", NS_DEST)
    binary = os.path.join(workdir, "delay-line")
    if not os.path.exists(binary):
        sh("cc", "-O2", "-Wall", "-o", binary, os.path.join(ROOT, "Perf", "delay-line.c"), "-lpthread")
    delay, loss, reorder = IMPAIRMENTS[impairment]
    line = subprocess.Popen([binary, NS_SOURCE, NS_DEST, str(delay), "256", str(loss), str(reorder)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if line.stdout.readline().strip() != "ready":
        raise RuntimeError("the delay line did not start: " + line.stderr.read())
    for ns, mine, peer in [(NS_SOURCE, ADDR_SOURCE, ADDR_DEST), (NS_DEST, ADDR_DEST, ADDR_SOURCE)]:
        sh("ip", "-n", ns, "addr", "add", mine, "peer", peer, "dev", "rdmigdl")
        sh("ip", "-n", ns, "link", "set", "rdmigdl", "mtu", "1500", "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
    return line


def teardown_network():
    for ns in (NS_SOURCE, NS_DEST):
        sh("ip", "netns", "del", ns, check=False)


def network_available():
    """Why the matrix cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (network namespaces and veth)"
    probe = sh("ip", "netns", "add", "rdmig-fm-probe", check=False)
    if probe.returncode != 0:
        return f"ip netns add failed: {probe.stderr.strip()}"
    sh("ip", "netns", "del", "rdmig-fm-probe", check=False)
    return None


class Service:
    """One rdmig process in a namespace; stderr collected line by line."""

    def __init__(self, namespace, arguments, environment=None):
        env = dict(os.environ)
        env.pop("RDMIG_FAULT", None)
        env.update(environment or {})
        self.process = subprocess.Popen(["ip", "netns", "exec", namespace] + arguments, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True, env=env)
        self.lines = []
        self.lock = threading.Condition()
        self.stdout = ""
        threading.Thread(target=self._read_errors, daemon=True).start()
        threading.Thread(target=self._read_output, daemon=True).start()

    def _read_errors(self):
        for line in self.process.stderr:
            with self.lock:
                self.lines.append(line.rstrip("\n"))
                self.lock.notify_all()

    def _read_output(self):
        self.stdout = self.process.stdout.read()

    def wait_for(self, text, timeout):
        deadline = time.time() + timeout
        with self.lock:
            while True:
                if any(text in line for line in self.lines):
                    return True
                left = deadline - time.time()
                if left <= 0 or self.process.poll() is not None:
                    return any(text in line for line in self.lines)
                self.lock.wait(min(left, 0.2))

    def wait(self, timeout):
        try:
            return self.process.wait(timeout=timeout), False
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(), True

    def report(self):
        time.sleep(0.2)
        try:
            return json.loads(self.stdout)
        except (ValueError, TypeError):
            return None


def run_cell(rdmig, phase, fault, key):
    workload = ["--guest-size", "512MiB", "--dirty-rate", "256MiB/s", "--working-set", "256MiB", "--vf", "ib-sw:qps=100"]
    timeouts = ["--peer-timeout", "20s", "--resolve-timeout", "20s"]
    dest = Service(NS_DEST, [rdmig, "dest", "--listen", f"{ADDR_DEST}:{PORT}", "--json", "--key-file", key] + timeouts)
    if not dest.wait_for("listening on", 20):
        dest.process.kill()
        return {"verdict": "setup failed", "detail": "\n".join(dest.lines[-5:])}
    source = Service(NS_SOURCE, [rdmig, "source", "--connect", f"{ADDR_DEST}:{PORT}", "--json", "--key-file", key] + workload + timeouts,
                     {"RDMIG_FAULT": "announce"})
    struck = source.wait_for(f"rdmig phase: {phase}", 60) if fault not in IMPAIRMENTS else True
    victim = None
    if struck:
        if fault.startswith(("kill-", "term-", "int-")):
            sig = {"kill": signal.SIGKILL, "term": signal.SIGTERM, "int": signal.SIGINT}[fault.split("-")[0]]
            victim = "source" if fault.endswith("source") else "dest"
            (source if victim == "source" else dest).process.send_signal(sig)
        elif fault.startswith("cut-"):
            seconds = int(fault[4:-1])
            sh("ip", "-n", NS_SOURCE, "link", "set", LINK_SOURCE, "down")
            threading.Timer(seconds, lambda: sh("ip", "-n", NS_SOURCE, "link", "set", LINK_SOURCE, "up", check=False)).start()
    bound = 150
    source_exit, source_hung = source.wait(bound)
    dest_exit, dest_hung = dest.wait(bound if not source_hung else 5)
    sh("ip", "-n", NS_SOURCE, "link", "set", LINK_SOURCE, "up", check=False)
    return evaluate(phase, fault, struck, victim, source, dest, source_exit, dest_exit, source_hung or dest_hung)


def evaluate(phase, fault, struck, victim, source, dest, source_exit, dest_exit, hung):
    source_report, dest_report = source.report(), dest.report()
    killed = fault.startswith("kill-")
    source_where = (source_report or {}).get("guest-location") or ""
    dest_where = (dest_report or {}).get("guest-location") or ""
    source_runs = source_where.startswith("source (resumed") or source_where.startswith("source (running")
    source_paused_known = source_where.startswith("unknown (paused on the source")
    dest_runs = (dest_report or {}).get("status") == "completed" and dest_where.startswith("destination")
    problems = []
    if hung:
        problems.append("hang")
    if source_runs and dest_runs:
        problems.append("TWO running copies")
    # A SIGKILL takes the copy in its own process with it (the synthetic guest lives there):
    # the source's before the hand-over, the destination's once the source handed it over.
    holder_killed = killed and (victim == "source" or (victim == "dest" and source_where.startswith("destination")))
    if not (source_runs or dest_runs or source_paused_known) and not holder_killed:
        problems.append("no copy left")
    if dest_runs and (dest_report or {}).get("verified") is not True:
        problems.append("completed without verification")
    if (source_report or {}).get("status") == "completed" and not dest_runs and victim != "dest":
        problems.append("source says completed, destination does not run it")
    expected_exits = {0, 1, 3, 128 + signal.SIGTERM, 128 + signal.SIGINT, -signal.SIGKILL, 128 + signal.SIGKILL}
    for name, code in (("source", source_exit), ("dest", dest_exit)):
        if code not in expected_exits:
            problems.append(f"{name} exit {code}")
    outcome = ("destination" if dest_runs else "source" if source_runs else "paused on source (unknown)" if source_paused_known
               else "died with its process (SIGKILL)" if holder_killed else "none")
    reason = (source_report or {}).get("error-desc") or ""
    if fault in IMPAIRMENTS and reason:
        outcome += f" ({reason[:80]})"
    return {
        "verdict": "ok" if not problems else "FAIL: " + ", ".join(problems),
        "struck": struck, "guest": outcome, "source-exit": source_exit, "dest-exit": dest_exit,
        "source-location": source_where, "dest-location": dest_where,
        "source-stderr": source.lines[-40:], "dest-stderr": dest.lines[-15:],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the CI subset")
    parser.add_argument("--cells", help="PHASE:FAULT,... (default: all)")
    parser.add_argument("--rdmig", default=os.path.join(ROOT, ".build", "debug", "rdmig"))
    parser.add_argument("--output", help="write the table (Markdown) here")
    arguments = parser.parse_args()
    why_not = network_available()
    if why_not:
        print(f"fault matrix skipped: {why_not}")
        return 77
    if arguments.cells:
        cells = [tuple(cell.split(":")) for cell in arguments.cells.split(",")]
    elif arguments.quick:
        cells = [tuple(cell.split(":")) for cell in QUICK]
    else:
        cells = [(phase, fault) for phase in PHASES for fault in FAULTS] + [("all", impairment) for impairment in IMPAIRMENTS]
    setup_network()
    key = os.path.join(tempfile.mkdtemp(prefix="rdmig-fm-"), "psk")
    with open(key, "w") as f:
        f.write(os.urandom(32).hex())
    os.chmod(key, 0o600)
    rows = []
    failures = 0
    try:
        workdir = os.path.dirname(key)
        for phase, fault in cells:
            started = time.time()
            line = setup_line(fault, workdir) if fault in IMPAIRMENTS else None
            try:
                result = run_cell(arguments.rdmig, phase, fault, key)
            finally:
                if line:
                    line.terminate()
                    line.wait()
                    setup_network()
            result.update(phase=phase, fault=fault, seconds=round(time.time() - started, 1))
            rows.append(result)
            failures += 0 if result["verdict"] == "ok" else 1
            print(f"{phase:14} {fault:12} {result['verdict']:10} guest: {result.get('guest', '?'):28} "
                  f"exits {result.get('source-exit')}/{result.get('dest-exit')} ({result['seconds']} s)", flush=True)
            if result["verdict"] != "ok":
                for side in ("source", "dest"):
                    print(f"  {side} stderr (last lines):\n    " + "\n    ".join(result.get(f"{side}-stderr", [])), flush=True)
    finally:
        teardown_network()
    if arguments.output:
        with open(arguments.output, "w") as out:
            out.write("| phase | fault | verdict | where the guest is | source / dest exit | seconds |\n|---|---|---|---|---|---|\n")
            for row in rows:
                out.write(f"| {row['phase']} | {row['fault']} | {row['verdict']} | {row.get('guest', '')} | "
                          f"{row.get('source-exit')} / {row.get('dest-exit')} | {row['seconds']} |\n")
    print(f"{len(rows) - failures} of {len(rows)} cells ok")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

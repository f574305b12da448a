#!/usr/bin/env python3
"""A plain QEMU -> QEMU live migration of the test guest on loopback (tcp: or fd:), checked end to end.

Starts a source guest (run-guest.sh), waits for its heartbeats, starts a destination with
-incoming defer -S, migrates over tcp:127.0.0.1, continues the destination, and checks:
status `completed`, the source `postmigrate`, the destination `running`, and the destination's
heartbeats continuing the source's count (n and written grow) with errors=0 throughout.
This is the baseline rdmig's QEMU mode is compared with, and a check of the guest itself.

Usage: test-migration.py [--memory MiB] [--ws MiB] [--rate MB/s] [--beats N] [--transport tcp|fd]
                         [--max-bandwidth BYTES/s] [--downtime-limit ms] [--timeout s] [--keep]
  --transport fd passes each QEMU one end of a socket pair with QMP getfd (SCM_RIGHTS) and
  relays the stream between the other ends: the fd: path rdmig's QEMU mode uses.
Env:   as run-guest.sh (RDMIG_CACHE, RDMIG_QEMU, RDMIG_QEMU_ACCEL, RDMIG_QEMU_ODD_RAM)
Out:   progress and a result line:
         rdmig qemu-guest migration: PASS qemu=10.0.2 accel=tcg memory=256MiB ... total=1.2s downtime=45ms ...
Exit:  0 pass; 1 a check failed (the line says which); 2 QEMU could not be set up.
"""
import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qmp import QMP  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
HEARTBEAT = re.compile(r"rdmig-guest: heartbeat n=(\d+) written=(\d+) errors=(\d+)")


def log(message):
    print(f"rdmig qemu-guest migration: {message}", flush=True)


def shell_assignments(output):
    return dict(line.split("=", 1) for line in output.splitlines() if "=" in line)


def heartbeats(serial):
    try:
        with open(serial, errors="replace") as file:
            text = file.read()
    except FileNotFoundError:
        return [], ""
    return [tuple(map(int, match.groups())) for match in HEARTBEAT.finditer(text)], text


def wait_heartbeats(serial, count, timeout, pid):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        beats, _ = heartbeats(serial)
        if len(beats) >= count:
            return beats
        if not alive(pid):
            break
        time.sleep(0.1)
    beats, text = heartbeats(serial)
    tail = "\n".join(text.splitlines()[-15:])
    raise TimeoutError(f"{len(beats)} of {count} heartbeats in {serial} within {timeout} s; its end:\n{tail}")


def alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_guest(name, args, incoming):
    command = [os.path.join(HERE, "run-guest.sh"), "--name", name, "--memory", str(args.memory),
               "--ws", str(args.ws), "--rate", str(args.rate), "--hb", str(args.hb)]
    if incoming:
        command.append("--incoming")
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"run-guest.sh {name} failed: {result.stderr.strip()}")
    guest = shell_assignments(result.stdout)
    guest["RDMIG_PID"] = int(guest["RDMIG_PID"])
    return guest


class FdRelay(threading.Thread):
    """The shape of rdmig's QEMU mode with the network left out: each QEMU gets one end of a
    socket pair through `getfd` (SCM_RIGHTS), and this thread copies the stream between the
    other ends (as socat between two getfd socket pairs did in FACTS.md's measurements)."""

    def __init__(self, src, dst):
        super().__init__(daemon=True)
        source_qemu, self.source_end = socket.socketpair()
        destination_qemu, self.destination_end = socket.socketpair()
        dst.command("getfd", {"fdname": "migration"}, fds=[destination_qemu.fileno()])
        src.command("getfd", {"fdname": "migration"}, fds=[source_qemu.fileno()])
        source_qemu.close()
        destination_qemu.close()
        self.relayed = 0
        self.start()

    def run(self):
        buffer = bytearray(1 << 20)
        view = memoryview(buffer)
        while True:
            count = self.source_end.recv_into(buffer)
            if count == 0:
                break
            self.destination_end.sendall(view[:count])
            self.relayed += count
        self.destination_end.shutdown(socket.SHUT_WR)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--memory", type=int, default=256, help="guest RAM in MiB (default 256)")
    parser.add_argument("--ws", type=int, default=64, help="working set in MiB (default 64)")
    parser.add_argument("--rate", type=float, default=20, help="dirty rate in MB/s (default 20)")
    parser.add_argument("--hb", type=int, default=500, help="heartbeat interval in ms (default 500)")
    parser.add_argument("--beats", type=int, default=3, help="heartbeats wanted on each side (default 3)")
    parser.add_argument("--max-bandwidth", type=int, default=10 << 30,
                        help="migration max-bandwidth in bytes/s (default 10 GiB/s: QEMU's 128 MiB/s throttles)")
    parser.add_argument("--downtime-limit", type=int, default=300, help="downtime-limit in ms (default 300)")
    parser.add_argument("--timeout", type=float, default=120, help="seconds allowed for the migration (default 120)")
    parser.add_argument("--transport", choices=["tcp", "fd"], default="tcp",
                        help="tcp: QEMU to QEMU directly; fd: getfd socket pairs relayed by this script")
    parser.add_argument("--keep", action="store_true", help="leave both QEMUs running")
    args = parser.parse_args()

    timings = {}
    started = time.monotonic()
    build = subprocess.run([os.path.join(HERE, "build-image.sh")], capture_output=True, text=True)
    if build.returncode != 0:
        log(f"FAIL: build-image.sh failed: {build.stderr.strip()}")
        return 2
    timings["image"] = time.monotonic() - started

    guests = []
    passed = False
    try:
        started = time.monotonic()
        source = start_guest(f"migration-source-{os.getpid()}", args, incoming=False)
        guests.append(source)
        wait_heartbeats(source["RDMIG_SERIAL"], 1, 120, source["RDMIG_PID"])
        timings["boot"] = time.monotonic() - started
        wait_heartbeats(source["RDMIG_SERIAL"], args.beats, 60, source["RDMIG_PID"])

        destination = start_guest(f"migration-destination-{os.getpid()}", args, incoming=True)
        guests.append(destination)
        port = free_port()
        with QMP(source["RDMIG_QMP"]) as src, QMP(destination["RDMIG_QMP"]) as dst:
            accel = "kvm" if src.command("query-kvm")["enabled"] else "tcg"
            version = "{major}.{minor}.{micro}".format(**src.version)
            log(f"QEMU {version}, accelerator {accel}, {args.memory} MiB guest, {args.ws} MiB working set "
                f"dirtied at {args.rate} MB/s")
            capabilities = [{"capability": "events", "state": True}]
            dst.command("migrate-set-capabilities", {"capabilities": capabilities})
            if args.transport == "fd":
                uri = "fd:migration"
                relay = FdRelay(src, dst)
            else:
                uri = f"tcp:127.0.0.1:{port}"
            dst.command("migrate-incoming", {"uri": uri})
            src.command("migrate-set-capabilities", {"capabilities": capabilities})
            src.command("migrate-set-parameters",
                        {"max-bandwidth": args.max_bandwidth, "downtime-limit": args.downtime_limit})
            started = time.monotonic()
            src.command("migrate", {"uri": uri})
            deadline = started + args.timeout
            while True:
                info = src.command("query-migrate")
                if info.get("status") in ("completed", "failed", "cancelled"):
                    break
                if time.monotonic() > deadline:
                    src.command("migrate_cancel")
                    log(f"FAIL: migration still {info.get('status')} after {args.timeout} s: {info.get('ram')}")
                    return 1
                time.sleep(0.05)
            timings["migration"] = time.monotonic() - started
            if args.transport == "fd":
                relay.join(10)
            if info["status"] != "completed":
                log(f"FAIL: migration {info['status']}: {info.get('error-desc', '')}")
                return 1
            source_status = src.command("query-status")["status"]
            destination_status = dst.command("query-status")["status"]
            if source_status != "postmigrate":
                log(f"FAIL: the source is {source_status}, not postmigrate")
                return 1
            if destination_status not in ("paused", "prelaunch"):
                log(f"FAIL: the destination (-S) is {destination_status} before cont, not paused")
                return 1
            dst.command("cont")
            destination_status = dst.command("query-status")["status"]
            if destination_status != "running":
                log(f"FAIL: the destination is {destination_status} after cont, not running")
                return 1

        after_source, _ = heartbeats(source["RDMIG_SERIAL"])
        beats = wait_heartbeats(destination["RDMIG_SERIAL"], args.beats, 60, destination["RDMIG_PID"])
        _, text = heartbeats(destination["RDMIG_SERIAL"])
        last_source = after_source[-1]
        problems = []
        if any(errors for _, _, errors in after_source):
            problems.append(f"source heartbeats reported errors: {after_source[-1]}")
        if any(errors for _, _, errors in beats) or "rdmig-guest: error" in text:
            problems.append(f"destination heartbeats reported errors: {beats[-1]}")
        # A heartbeat line cut by the switchover is finished by the destination and not parsed,
        # so the destination's first parsed n is the source's last + 1, or + 2.
        if not last_source[0] < beats[0][0] <= last_source[0] + 2:
            problems.append(f"destination heartbeat n={beats[0][0]} does not continue the source's n={last_source[0]}")
        if beats[-1][1] <= last_source[1] and args.rate > 0:
            problems.append(f"pages written did not grow on the destination ({last_source[1]} -> {beats[-1][1]})")
        ram = info.get("ram", {})
        summary = (f"qemu={version} accel={accel} transport={args.transport} memory={args.memory}MiB ws={args.ws}MiB rate={args.rate}MB/s "
                   f"total={info.get('total-time', 0) / 1000:.2f}s downtime={info.get('downtime', '?')}ms "
                   f"setup={info.get('setup-time', '?')}ms transferred={ram.get('transferred', 0) / 2**20:.1f}MiB "
                   f"dirty-sync={ram.get('dirty-sync-count', '?')} "
                   f"source-last=n{last_source[0]}/w{last_source[1]} destination=n{beats[0][0]}..n{beats[-1][0]}"
                   f"/w{beats[-1][1]} errors={beats[-1][2]} | image {timings['image']:.1f}s "
                   f"boot-to-heartbeat {timings['boot']:.1f}s migrate-wall {timings['migration']:.2f}s")
        if problems:
            log("FAIL: " + "; ".join(problems) + " | " + summary)
            return 1
        log("PASS " + summary)
        passed = True
        return 0
    except (TimeoutError, RuntimeError, ConnectionError) as error:
        log(f"FAIL: {error}")
        return 1
    finally:
        if not args.keep:
            for guest in guests:
                try:
                    os.kill(guest["RDMIG_PID"], 15)
                except ProcessLookupError:
                    pass
                if passed:
                    shutil.rmtree(guest["RDMIG_RUN_DIR"], ignore_errors=True)
            if guests and not passed:
                log(f"logs kept in {os.path.dirname(guests[0]['RDMIG_RUN_DIR'])}/migration-*-{os.getpid()}")


if __name__ == "__main__":
    sys.exit(main())

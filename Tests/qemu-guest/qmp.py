#!/usr/bin/env python3
"""A small QMP client for rdmig's QEMU test scripts (not part of rdmig itself).

QMP is JSON over a unix socket: a greeting, `qmp_capabilities`, then commands answered with
{"return": ...} or {"error": ...}, with asynchronous {"event": ...} messages in between
(docs/interop/qmp-spec.rst in QEMU). `getfd` needs its fd on the same message as the command
(SCM_RIGHTS), hence `fds=` on command().

As a command:  qmp.py SOCKET COMMAND [JSON-ARGUMENTS]   prints the return value as JSON;
               exit 0 on success, 1 on a QMP error (printed to stderr), 2 on a usage error.
"""
import json
import socket
import sys
import time


class QMPError(Exception):
    def __init__(self, command, error):
        self.command = command
        self.error_class = error.get("class", "")
        self.description = error.get("desc", "")
        super().__init__(f"QMP {command} failed: {self.error_class}: {self.description}")


class QMP:
    def __init__(self, path, timeout=30.0):
        self.path = path
        self.events = []
        self._buffer = b""
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._socket.connect(path)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self._socket.settimeout(timeout)
        greeting = self._read_message()
        if "QMP" not in greeting:
            raise RuntimeError(f"{path} is not a QMP socket: it greeted with {greeting}")
        self.version = greeting["QMP"]["version"]["qemu"]
        self.command("qmp_capabilities")

    def close(self):
        self._socket.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _read_message(self):
        while b"\n" not in self._buffer:
            chunk = self._socket.recv(65536)
            if not chunk:
                raise ConnectionError(f"QMP socket {self.path} closed (did QEMU exit?)")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def command(self, name, arguments=None, fds=None):
        request = {"execute": name}
        if arguments:
            request["arguments"] = arguments
        data = json.dumps(request).encode() + b"\n"
        if fds:
            socket.send_fds(self._socket, [data], fds)
        else:
            self._socket.sendall(data)
        while True:
            message = self._read_message()
            if "event" in message:
                self.events.append(message)
            elif "error" in message:
                raise QMPError(name, message["error"])
            elif "return" in message:
                return message["return"]

    def wait_event(self, name, timeout, predicate=lambda event: True):
        """Returns the first event NAME (already received or arriving within timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events:
                if event["event"] == name and predicate(event):
                    self.events.remove(event)
                    return event
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no QMP event {name} within {timeout} s")
            self._socket.settimeout(remaining)
            try:
                message = self._read_message()
            except socket.timeout:
                continue
            if "event" in message:
                self.events.append(message)


def main():
    if len(sys.argv) not in (3, 4):
        print(__doc__, file=sys.stderr)
        return 2
    arguments = json.loads(sys.argv[3]) if len(sys.argv) == 4 else None
    try:
        with QMP(sys.argv[1]) as qmp:
            print(json.dumps(qmp.command(sys.argv[2], arguments), indent=2))
    except QMPError as error:
        print(error, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

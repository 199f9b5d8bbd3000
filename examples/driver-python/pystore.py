#!/usr/bin/env python3
"""hypertask-driver-pystore: an external hypertask driver in Python (standard library only).

A store-level program of protocol 1 (docs/writing-a-driver.md): it keeps task documents and
compare-and-swaps them; hypertask hashes and merges. Every task is one file `<id>.json` in a
directory, holding the task, the hash hypertask sent with it, and a version token:

    {"task": {...}, "hash": "<hash>", "version": "<random token>"}

Install it on PATH under the name hypertask expects, then configure it:

    ln -s "$PWD/pystore.py" ~/.local/bin/hypertask-driver-pystore

    [drivers.py]
    type = "pystore"
    path = "py-tasks"        # relative to the config file's directory

`hypertask driver-test py` runs the conformance suite against it.
"""

import fcntl
import json
import os
import re
import sys
import tempfile
import uuid

PROTOCOL = 1
TASK_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class DriverError(Exception):
    """An error answer: kind is unavailable, contended, invalid, config, denied or internal."""

    def __init__(self, kind, message, retryable=False):
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.retryable = retryable

    def wire(self):
        return {"kind": self.kind, "message": self.message, "retryable": self.retryable}


class Store:
    """Task documents in a directory, one file per task, written atomically."""

    capabilities = {"max_batch": 500}

    def __init__(self, options, config_dir):
        options = dict(options)
        # Core keys hypertask always sends; this store has no use for them.
        options.pop("timeout", None)
        options.pop("max_task_bytes", None)
        path = options.pop("path", None)
        if not isinstance(path, str) or not path:
            raise DriverError("config", "the table needs path = \"<directory>\"")
        if options:
            raise DriverError("config", "unknown option(s): " + ", ".join(sorted(options)))
        path = os.path.expanduser(path)
        if config_dir and not os.path.isabs(path):
            path = os.path.join(config_dir, path)
        self.dir = path
        os.makedirs(self.dir, exist_ok=True)

    # -- files -----------------------------------------------------------------------------

    def file(self, task_id):
        if not TASK_ID.match(task_id):
            raise DriverError("invalid", "%r is not a task id" % task_id)
        return os.path.join(self.dir, task_id + ".json")

    def read(self, task_id):
        """The stored entry of task_id, or None; DriverError if it cannot be read."""
        try:
            with open(self.file(task_id), "rb") as f:
                entry = json.load(f)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            raise DriverError("invalid", "%s cannot be read: %s" % (self.file(task_id), e))
        if not (isinstance(entry, dict) and isinstance(entry.get("task"), dict)
                and isinstance(entry.get("hash"), str)
                and isinstance(entry.get("version"), str)):
            raise DriverError("invalid", "%s is not a stored task" % self.file(task_id))
        return entry

    def write(self, task_id, entry):
        """Replaces the file of task_id atomically (a reader sees the old or the new one)."""
        fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".tmp-")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(entry, f, separators=(",", ":"))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.file(task_id))
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def locked(self):
        """An exclusive lock on the directory, so concurrent writers never lose an update."""
        f = open(os.path.join(self.dir, ".lock"), "w")
        fcntl.flock(f, fcntl.LOCK_EX)
        return f

    # -- operations ------------------------------------------------------------------------

    def list(self):
        entries, problems = {}, []
        for name in sorted(os.listdir(self.dir)):
            if name.startswith(".") or not name.endswith(".json"):
                continue  # foreign and temporary files are not tasks
            task_id = name[: -len(".json")]
            if not TASK_ID.match(task_id):
                continue
            try:
                entry = self.read(task_id)
            except DriverError as e:
                problems.append({"id": task_id, "message": e.message})
                continue
            if entry is not None:
                entries[task_id] = {"hash": entry["hash"], "version": entry["version"]}
        return {"entries": entries, "problems": problems}

    def get(self, ids):
        tasks = {}
        for task_id in ids:
            try:
                entry = self.read(task_id)
            except DriverError as e:
                tasks[task_id] = {"error": e.wire()}
                continue
            tasks[task_id] = None if entry is None else {
                "task": entry["task"], "version": entry["version"]}
        return {"tasks": tasks}

    def decide(self, current, write):
        """The compare-and-swap rule: 'same', 'conflict' or 'write'."""
        if current is not None and current["hash"] == write["hash"]:
            return "same"
        if (current["version"] if current else None) != write["expected"]:
            return "conflict"
        return "write"

    def put(self, writes):
        results = {}
        with self.locked():
            for w in writes:
                task_id = w["id"]
                try:
                    current = self.read(task_id)
                except DriverError as e:
                    results[task_id] = {"error": e.wire()}  # never overwrite what we cannot read
                    continue
                decision = self.decide(current, w)
                if decision == "same":
                    results[task_id] = {"written": current["version"]}
                elif decision == "conflict":
                    results[task_id] = {"conflict": True}
                else:
                    version = uuid.uuid4().hex
                    self.write(task_id, {"task": w["task"], "hash": w["hash"], "version": version})
                    results[task_id] = {"written": version}
            dir_fd = os.open(self.dir, os.O_RDONLY)
            try:
                os.fsync(dir_fd)  # the renames are durable before we answer
            finally:
                os.close(dir_fd)
        return {"results": results}

    def finish(self):
        return {}  # every put is already durable

    def check(self):
        if not os.access(self.dir, os.W_OK):
            raise DriverError("denied", "%s is not writable" % self.dir)
        count = sum(1 for name in os.listdir(self.dir)
                    if name.endswith(".json") and not name.startswith("."))
        return {"detail": "%s: %d tasks" % (self.dir, count)}


def serve(make_store=Store, stdin=None, stdout=None):
    """Answers protocol 1, one JSON line per request, until stdin closes."""
    stdin = stdin or sys.stdin.buffer
    stdout = stdout or sys.stdout
    store = None
    for line in iter(stdin.readline, b""):
        seq = None
        try:
            try:
                request = json.loads(line)
            except ValueError as e:
                raise DriverError("invalid", "not JSON: %s" % e)
            if not isinstance(request, dict):
                raise DriverError("invalid", "a request is a JSON object")
            seq, op = request.get("seq"), request.get("op")
            if op == "hello":
                if request.get("protocol") != PROTOCOL:
                    raise DriverError("config", "this program speaks protocol %d" % PROTOCOL)
                store = make_store(request.get("options") or {}, request.get("config_dir"))
                result = {"protocol": PROTOCOL, "level": "store",
                          "capabilities": store.capabilities}
            elif store is None:
                raise DriverError("invalid", "the first request must be hello")
            elif op == "list":
                result = store.list()
            elif op == "get":
                result = store.get(request["ids"])
            elif op == "put":
                result = store.put(request["writes"])
            elif op == "finish":
                result = store.finish()
            elif op == "check":
                result = store.check()
            else:
                raise DriverError("invalid", "unknown op %r (this is a store-level program)" % op)
            answer = {"seq": seq, "ok": result}
        except DriverError as e:
            answer = {"seq": seq, "error": e.wire()}
        except Exception as e:  # a bug here must not desynchronise the stream
            message = "%s: %s" % (type(e).__name__, e)
            answer = {"seq": seq, "error": DriverError("internal", message).wire()}
        stdout.write(json.dumps(answer, separators=(",", ":")) + "\n")
        stdout.flush()


if __name__ == "__main__":
    serve()

"""Store-level programs with one fault each, for the tests of `hypertask driver-test` and of
the external-program host: the Python example (pystore, on PYTHONPATH) with one method changed.

Usage: faulty.py MODE   (the tests wrap it as hypertask-driver-KIND, which gets no arguments)
"""

import sys
import time

import pystore


def hang():
    sys.stderr.write("stuck in a loop\n")
    sys.stderr.flush()
    time.sleep(3600)


class IgnoresExpected(pystore.Store):
    """Writes whatever the stored version: a stale write lands."""

    def decide(self, current, write):
        if current is not None and current["hash"] == write["hash"]:
            return "same"
        return "write"


class WrongIds(pystore.Store):
    """Files each fetched task under the next id asked."""

    def get(self, ids):
        tasks = super().get(ids)["tasks"]
        keys = list(tasks)
        return {"tasks": {k: tasks[keys[(i + 1) % len(keys)]] for i, k in enumerate(keys)}}


class Silent(pystore.Store):
    """Never answers a health check."""

    def check(self):
        hang()


def reverse(keyed):
    return dict(reversed(list(keyed.items())))


class Reversed(pystore.Store):
    """Every keyed answer in reverse order."""

    def list(self):
        listed = super().list()
        listed["entries"] = reverse(listed["entries"])
        return listed

    def get(self, ids):
        return {"tasks": reverse(super().get(ids)["tasks"])}

    def put(self, writes):
        return {"results": reverse(super().put(writes)["results"])}


class SmallBatches(pystore.Store):
    """Declares max_batch 3 and refuses anything larger."""

    capabilities = {"max_batch": 3}

    def get(self, ids):
        if len(ids) > 3:
            raise pystore.DriverError("invalid", "asked for %d tasks at once" % len(ids))
        return super().get(ids)

    def put(self, writes):
        if len(writes) > 3:
            raise pystore.DriverError("invalid", "sent %d writes at once" % len(writes))
        return super().put(writes)


def mute():
    """Never answers anything, not even the handshake."""
    for _ in sys.stdin:
        sys.stderr.write("not listening\n")
        sys.stderr.flush()


MODES = {
    "ignores-expected": IgnoresExpected,
    "wrong-ids": WrongIds,
    "silent": Silent,
    "reversed": Reversed,
    "small-batches": SmallBatches,
}

if __name__ == "__main__":
    if sys.argv[1] == "mute":
        mute()
    else:
        pystore.serve(MODES[sys.argv[1]])

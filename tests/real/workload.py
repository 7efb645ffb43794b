# SPDX-License-Identifier: MIT
# Python workload for tests/real/cases.sh: dicts, strings, json, threads, subprocess and gc; deterministic output.
#
# Every line printed depends on the computation only, so a run on another
# malloc must print the same bytes.  Sizes keep it to a few seconds.
import gc
import hashlib
import json
import queue
import random
import subprocess
import sys
import threading
import weakref


def digest(obj):
    return hashlib.sha256(repr(obj).encode()).hexdigest()[:16]


def dicts(rng):
    # Growth, deletion holes, resizes; keys of several types.
    d = {}
    for i in range(200000):
        d["k%d" % rng.randrange(1 << 30)] = i
        if i % 3 == 0:
            d[(i, str(i))] = [i] * (i % 7)
    for k in list(d)[::5]:
        del d[k]
    inv = {}
    for k, v in d.items():
        inv.setdefault((v if isinstance(v, int) else len(v)) % 1000, []).append(k)
    return len(d), len(inv), digest(sorted(map(str, d.items()))[:2000])


def strings(rng):
    words = ["".join(chr(97 + rng.randrange(26)) for _ in range(rng.randrange(1, 12)))
             for _ in range(50000)]
    text = " ".join(words)
    parts = text.split(" ")
    joined = "-".join(sorted(set(parts)))
    big = (text.upper() + text[::-1]) * 3
    return len(parts), len(joined), digest(joined[:100000]), big.count("AB")


def json_round(rng):
    doc = [{"id": i, "name": "n%d" % i, "vals": [rng.random() for _ in range(i % 10)],
            "sub": {"a": [None, True, i * 1.5], "s": "x" * (i % 300)}}
           for i in range(20000)]
    s = json.dumps(doc, sort_keys=True)
    back = json.loads(s)
    return len(s), back == doc, hashlib.sha256(s.encode()).hexdigest()[:16]


def worker(n, seed, out):
    # Each thread allocates and drops many objects of mixed sizes; the
    # results go through a queue (cross-thread frees).
    rng = random.Random(seed)
    acc = []
    for i in range(n):
        blob = bytearray(rng.randrange(1, 5000))
        blob[0] = i & 0xFF
        acc.append((i, bytes(blob[:64]), [i] * (i % 17)))
        if len(acc) > 500:
            acc = acc[250:]
        if i % 1000 == 0:
            out.put((seed, i, sum(len(a[2]) for a in acc)))
    out.put((seed, n, len(acc)))


def threads():
    out = queue.Queue()
    ts = [threading.Thread(target=worker, args=(60000, s, out)) for s in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    items = []
    while not out.empty():
        items.append(out.get())
    items.sort()
    return len(items), digest(items)


def subprocesses():
    # Children inherit LD_PRELOAD: a pipeline of Python and coreutils.
    r = subprocess.run([sys.executable, "-c",
                        "import sys; d = {i: str(i) * 3 for i in range(100000)}; "
                        "print(sum(map(len, d.values())))"],
                       capture_output=True, text=True, check=True)
    s = subprocess.run(["sort", "-r"], input="\n".join(map(str, range(30000))) + "\n",
                       capture_output=True, text=True, check=True)
    return r.stdout.strip(), len(s.stdout), s.stdout.splitlines()[:3]


class Node:
    def __init__(self, i):
        self.i = i
        self.peer = None
        self.data = [i] * 8


def cycles():
    # Reference cycles only the collector frees; weakrefs prove they went.
    gc.collect()
    gc.disable()
    refs = []
    for i in range(50000):
        a, b = Node(i), Node(-i)
        a.peer, b.peer = b, a
        refs.append(weakref.ref(a))
    del a, b
    alive_before = sum(r() is not None for r in refs)
    gc.enable()
    gc.collect()
    alive_after = sum(r() is not None for r in refs)
    return alive_before, alive_after


def main():
    rng = random.Random(12345)
    print("dicts", *dicts(rng))
    print("strings", *strings(rng))
    print("json", *json_round(rng))
    print("threads", *threads())
    print("subprocess", *subprocesses())
    print("gc", *cycles())


main()

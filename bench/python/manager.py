"""CPython runners for the manager workloads (see ../README.md).

  manager.py roundtrip N   Manager().dict(): N calls, alternately d[k] = i and
                           d.get(k): us per call
  manager.py update N      Manager().dict().update() of N int -> int pairs:
                           ms per update
"""
import multiprocessing as mp
import sys
import time

from harness import serve


def roundtrip(n):
    m = mp.Manager()
    d = m.dict()

    def rep():
        t0 = time.perf_counter()
        for i in range(1, n + 1):
            if i % 2:
                d[i % 64] = i
            elif d.get((i - 1) % 64) != i - 1:
                raise RuntimeError("the proxy lost a value")
        return (time.perf_counter() - t0) / n * 1e6

    serve(rep, m.shutdown)


def update(n):
    m = mp.Manager()
    d = m.dict()
    items = {i: i for i in range(n)}

    def rep():
        t0 = time.perf_counter()
        d.update(items)
        ms = (time.perf_counter() - t0) * 1e3
        if len(d) != n:
            raise RuntimeError("the update lost entries")
        return ms

    serve(rep, m.shutdown)


def main():
    {"roundtrip": roundtrip, "update": update}[sys.argv[1]](int(sys.argv[2]))


if __name__ == "__main__":
    main()

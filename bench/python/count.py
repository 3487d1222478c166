"""CPython runner for seed_count_speedup (see ../README.md).

  count.py N PROCS    one repetition: count to N PROCS times in this process,
                      then in PROCS processes at once (default start method);
                      prints sequential time / parallel time (the speed-up)
"""
import multiprocessing as mp
import sys
import time

from harness import serve


def count(n):
    c = 0
    for _ in range(n):
        c += 1
    return c


def speedup(n, procs):
    t0 = time.perf_counter()
    for _ in range(procs):
        count(n)
    seq = time.perf_counter() - t0
    t0 = time.perf_counter()
    ps = [mp.Process(target=count, args=(n,)) for _ in range(procs)]
    for p in ps:
        p.start()
    for p in ps:
        p.join()
        assert p.exitcode == 0, p.exitcode
    return seq / (time.perf_counter() - t0)


def main():
    n, procs = int(sys.argv[1]), int(sys.argv[2])
    serve(lambda: speedup(n, procs))


if __name__ == "__main__":
    main()

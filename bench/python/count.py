"""CPython runner for seed_count_speedup (see ../README.md).

  count.py SECONDS PROCS
                      picks N so that counting to N takes this interpreter
                      about SECONDS of CPU; then per repetition: count to N
                      PROCS times in this process, then in PROCS processes at
                      once (default start method); prints sequential time /
                      parallel time (the speed-up)
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


def calibrate(seconds):
    """The count that takes about `seconds`: doubles until one run takes a
    tenth of it (fastest of three), then scales; the loop is linear in n."""
    n = 1 << 14
    while True:
        took = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            count(n)
            took = min(took, time.perf_counter() - t0)
        if took >= seconds / 10:
            return int(n * seconds / took)
        n *= 2


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
    seconds, procs = float(sys.argv[1]), int(sys.argv[2])
    n = calibrate(seconds)
    serve(lambda: speedup(n, procs))


if __name__ == "__main__":
    main()

"""CPython runners for the pool workloads (see ../README.md); workers are
started with the default method (fork on Linux before 3.14).

  pool.py map1 N W             Pool(W).map(square, range(N), chunksize=1)
  pool.py map N W              Pool(W).map(square, range(N)) (default chunksize)
  pool.py imap_unordered1 N W  list(Pool(W).imap_unordered(square, range(N)))
  pool.py executor1 N W        ProcessPoolExecutor(W).map(square, range(N))

Each repetition prints tasks per second.
"""
import multiprocessing as mp
import sys
import time
from concurrent.futures import ProcessPoolExecutor

from harness import serve


def square(x):
    return x * x


def main():
    call, n, w = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    want = sum(x * x for x in range(n))
    if call == "executor1":
        pool = ProcessPoolExecutor(w)
        run = lambda: pool.map(square, range(n))
        close = pool.shutdown
    else:
        pool = mp.Pool(w)
        run = {
            "map1": lambda: pool.map(square, range(n), chunksize=1),
            "map": lambda: pool.map(square, range(n)),
            "imap_unordered1": lambda: pool.imap_unordered(square, range(n)),
        }[call]

        def close():
            pool.close()
            pool.join()

    def rep():
        t0 = time.perf_counter()
        total = sum(run())
        secs = time.perf_counter() - t0
        assert total == want, (total, want)
        return n / secs

    serve(rep, close)


if __name__ == "__main__":
    main()

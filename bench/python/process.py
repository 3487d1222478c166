"""CPython runners for the process workloads (see ../README.md).

  process.py start_join METHOD N     ctx.Process(target=noop).start(); .join(),
                                     N times, one child alive at a time: us/proc
  process.py return_value METHOD N   a child computes 2*i and sends it back over a
                                     Pipe(duplex=False); the parent receives it and
                                     joins, N times: us/proc
"""
import multiprocessing as mp
import sys
import time

from harness import serve


def noop():
    pass


def double(i, conn):
    conn.send(2 * i)
    conn.close()


def start_join(ctx, n):
    t0 = time.perf_counter()
    for _ in range(n):
        p = ctx.Process(target=noop)
        p.start()
        p.join()
        assert p.exitcode == 0, p.exitcode
    return (time.perf_counter() - t0) / n * 1e6


def return_value(ctx, n):
    t0 = time.perf_counter()
    for i in range(n):
        r, w = ctx.Pipe(duplex=False)
        p = ctx.Process(target=double, args=(i, w))
        p.start()
        w.close()
        assert r.recv() == 2 * i
        r.close()
        p.join()
        assert p.exitcode == 0, p.exitcode
    return (time.perf_counter() - t0) / n * 1e6


def main():
    kind, method, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    ctx = mp.get_context(method)
    fn = {"start_join": start_join, "return_value": return_value}[kind]
    serve(lambda: fn(ctx, n))


if __name__ == "__main__":
    main()

"""CPython runners for the pipe workloads (see ../README.md); the child is
started with the default method (fork on Linux before 3.14). The last two
arguments are the CPUs of the parent and the child (-1: not pinned).

  pipe.py roundtrip N P C      Pipe(): conn.send(i) / conn.recv() of a small int,
                               echoed by a child, N times: us per round trip
  pipe.py bulk SIZE COUNT P C  Pipe(): COUNT x send_bytes(SIZE bytes) to a child that
                               recv_bytes() each; an empty message asks for an ack, b"q"
                               ends the child: GB/s
"""
import multiprocessing as mp
import os
import sys
import time

from harness import serve


def pin(cpu):
    if cpu >= 0:
        os.sched_setaffinity(0, {cpu})


def echo(conn, cpu):
    pin(cpu)
    while True:
        x = conn.recv()
        if x is None:
            return
        conn.send(x)


def sink(conn, cpu):
    pin(cpu)
    while True:
        b = conn.recv_bytes()
        if not b:
            conn.send_bytes(b"k")
        elif b == b"q":
            return


def with_child(target, stop, cpus):
    """A duplex Pipe to a child running target; stop() ends it (a forked
    child holds a copy of our end too, so end of file would never come)."""
    here, there = mp.Pipe()
    p = mp.Process(target=target, args=(there, cpus[1]))
    p.start()
    there.close()
    pin(cpus[0])

    def close():
        stop(here)
        here.close()
        p.join()

    return here, close


def roundtrip(n, cpus):
    conn, close = with_child(echo, lambda c: c.send(None), cpus)

    def rep():
        t0 = time.perf_counter()
        for i in range(n):
            conn.send(i)
            conn.recv()
        return (time.perf_counter() - t0) / n * 1e6

    serve(rep, close)


def bulk(size, count, cpus):
    conn, close = with_child(sink, lambda c: c.send_bytes(b"q"), cpus)
    payload = b"\x07" * size

    def rep():
        t0 = time.perf_counter()
        for _ in range(count):
            conn.send_bytes(payload)
        conn.send_bytes(b"")
        conn.recv_bytes()
        return size * count / (time.perf_counter() - t0) / 1e9

    serve(rep, close)


def main():
    cpus = [int(c) for c in sys.argv[-2:]]
    if sys.argv[1] == "roundtrip":
        roundtrip(int(sys.argv[2]), cpus)
    else:
        bulk(int(sys.argv[2]), int(sys.argv[3]), cpus)


if __name__ == "__main__":
    main()

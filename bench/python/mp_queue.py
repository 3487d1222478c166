# Not "queue.py": that would shadow the standard library module multiprocessing imports.
"""CPython runners for the queue workloads (see ../README.md); the child is
started with the default method (fork on Linux before 3.14). The last two
arguments are the CPUs of the parent and the child (-1: not pinned).

  mp_queue.py roundtrip N P C        Queue(): put(i) on one queue, a child get()s it and
                                  put()s it on a second, get() it back, N times: us per
                                  round trip
  mp_queue.py throughput N P C       Queue(): a child put()s N small ints, the parent
                                  get()s them: million items per second
  mp_queue.py bulk SIZE COUNT P C    Queue(): COUNT x put(SIZE bytes) to a child that get()s
                                  each; an empty item asks for an ack: GB/s
"""
import multiprocessing as mp
import os
import sys
import time

from harness import serve


def pin(cpu):
    if cpu >= 0:
        os.sched_setaffinity(0, {cpu})


def echo(to, back, cpu):
    pin(cpu)
    while True:
        x = to.get()
        if x is None:
            return
        back.put(x)


def produce(to, back, cpu):
    pin(cpu)
    while True:
        n = to.get()
        if n is None:
            return
        for i in range(n):
            back.put(i)


def sink(to, back, cpu):
    pin(cpu)
    while True:
        b = to.get()
        if b is None:
            return
        if not b:
            back.put(b"k")


def with_child(target, cpus):
    to, back = mp.Queue(), mp.Queue()
    p = mp.Process(target=target, args=(to, back, cpus[1]))
    p.start()
    pin(cpus[0])

    def close():
        to.put(None)
        p.join()

    return to, back, close


def roundtrip(n, cpus):
    to, back, close = with_child(echo, cpus)

    def rep():
        t0 = time.perf_counter()
        for i in range(n):
            to.put(i)
            back.get()
        return (time.perf_counter() - t0) / n * 1e6

    serve(rep, close)


def throughput(n, cpus):
    to, back, close = with_child(produce, cpus)

    def rep():
        t0 = time.perf_counter()
        to.put(n)
        for _ in range(n):
            back.get()
        return n / (time.perf_counter() - t0) / 1e6

    serve(rep, close)


def bulk(size, count, cpus):
    to, back, close = with_child(sink, cpus)
    payload = b"\x07" * size

    def rep():
        t0 = time.perf_counter()
        for _ in range(count):
            to.put(payload)
        to.put(b"")
        back.get()
        return size * count / (time.perf_counter() - t0) / 1e9

    serve(rep, close)


def main():
    cpus = [int(c) for c in sys.argv[-2:]]
    if sys.argv[1] == "roundtrip":
        roundtrip(int(sys.argv[2]), cpus)
    elif sys.argv[1] == "throughput":
        throughput(int(sys.argv[2]), cpus)
    else:
        bulk(int(sys.argv[2]), int(sys.argv[3]), cpus)


if __name__ == "__main__":
    main()

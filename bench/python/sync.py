"""CPython runners for the synchronisation workloads (see ../README.md).

  sync.py pair N          Lock(): N x acquire() + release(): ns per pair
  sync.py bank N          Value('q') incremented under its lock by 2 processes,
                          N times each, start to join: ns per increment
  sync.py event N P C     Events A, B: parent set(A), wait(B), clear(B); a child
                          wait(A), clear(A), set(B); N round trips: us per round trip
"""
import multiprocessing as mp
import os
import sys
import time

from harness import serve


def pin(cpu):
    if cpu >= 0:
        os.sched_setaffinity(0, {cpu})


def pair(n):
    lock = mp.Lock()

    def rep():
        acquire, release = lock.acquire, lock.release
        t = time.perf_counter()
        for _ in range(n):
            acquire()
            release()
        return (time.perf_counter() - t) * 1e9 / n

    serve(rep)


def deposit(v, n):
    for _ in range(n):
        with v.get_lock():
            v.value += 1


def bank(n):
    def rep():
        v = mp.Value("q", 0)
        t = time.perf_counter()
        ps = [mp.Process(target=deposit, args=(v, n)) for _ in range(2)]
        for p in ps:
            p.start()
        for p in ps:
            p.join()
        took = time.perf_counter() - t
        assert v.value == 2 * n
        return took * 1e9 / (2 * n)

    serve(rep)


def answer(a, b, stop, cpu):
    pin(cpu)
    while True:
        a.wait()
        if stop.is_set():
            return
        a.clear()
        b.set()


def event(n, cpus):
    a, b, stop = mp.Event(), mp.Event(), mp.Event()
    p = mp.Process(target=answer, args=(a, b, stop, cpus[1]))
    p.start()
    pin(cpus[0])

    def rep():
        t = time.perf_counter()
        for _ in range(n):
            a.set()
            b.wait()
            b.clear()
        return (time.perf_counter() - t) * 1e6 / n

    def close():
        stop.set()
        a.set()
        p.join()

    serve(rep, close)


if __name__ == "__main__":
    mode, n = sys.argv[1], int(sys.argv[2])
    if mode == "pair":
        pair(n)
    elif mode == "bank":
        bank(n)
    else:
        event(n, [int(c) for c in sys.argv[3:5]])

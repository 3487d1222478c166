"""The harness side of every CPython runner.

A script builds its state (children, pipes) once, then serve() answers the
Rust harness over stdin/stdout: it prints "ready", and for each "rep" line
runs one repetition and prints its figure; end of stdin tears down.
"""
import sys


def serve(rep, close=lambda: None):
    """rep() -> float runs one repetition; close() tears the state down."""
    print("ready", flush=True)
    try:
        for line in sys.stdin:
            if line.strip() == "rep":
                print("%.9g" % rep(), flush=True)
    finally:
        close()

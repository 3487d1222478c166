"""CPython side of python_object_roundtrip (see ../README.md): Python
objects through multiprocessing.connection over a Unix socket.

  objects.py echo PATH KEY      connect a Client to PATH, send back every
                                object received until None (the peer of
                                both runners)
  objects.py roundtrip N        a Listener here, an `echo` peer in another
                                python3 process; per repetition N round
                                trips of OBJECT: us per round trip
"""
import os
import subprocess
import sys
import tempfile
import time
from multiprocessing.connection import Client, Listener

from harness import serve

KEY = b"mproc-bench objects"


def payload():
    """A dict of 10 entries and a list of 1,000 floats, as one tuple."""
    return ({"key%d" % i: i for i in range(10)}, [i / 7 for i in range(1000)])


def echo(path, key):
    c = Client(path, authkey=key.encode())
    while True:
        x = c.recv()
        if x is None:
            break
        c.send(x)
    c.close()


def roundtrip(n):
    path = os.path.join(tempfile.mkdtemp(prefix="mproc-bench-"), "objects.sock")
    listener = Listener(path, authkey=KEY)
    peer = subprocess.Popen(
        [sys.executable, __file__, "echo", path, KEY.decode()]
    )
    conn = listener.accept()
    obj = payload()

    def rep():
        t0 = time.perf_counter()
        for _ in range(n):
            conn.send(obj)
            back = conn.recv()
        took = time.perf_counter() - t0
        assert back == obj
        return took / n * 1e6

    def close():
        conn.send(None)
        conn.close()
        peer.wait()
        listener.close()
        os.rmdir(os.path.dirname(path))

    serve(rep, close)


def main():
    if sys.argv[1] == "echo":
        echo(sys.argv[2], sys.argv[3])
    else:
        roundtrip(int(sys.argv[2]))


if __name__ == "__main__":
    main()

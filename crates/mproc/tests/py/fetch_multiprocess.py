"""Fetches CPython 3.12's `multiprocessing.connection`, as shipped by the
`multiprocess` package's source distribution (one copy per Python
version), for testing mproc's handshake against the {sha256} dialect with
the machine's python3 (3.11). Idempotent: a second run only checks.

Usage: python3 fetch_multiprocess.py DEST; prints the directory to put on
sys.path (it holds the `multiprocess` package for 3.12).
"""

import os
import subprocess
import sys
import tarfile

VERSION = "0.70.19"


def main():
    dest = os.path.abspath(sys.argv[1])
    root = os.path.join(dest, f"multiprocess-{VERSION}", "py3.12")
    conn = os.path.join(root, "multiprocess", "connection.py")
    if not os.path.exists(conn):
        os.makedirs(dest, exist_ok=True)
        sdist = os.path.join(dest, f"multiprocess-{VERSION}.tar.gz")
        if not os.path.exists(sdist):
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--quiet",
                 f"multiprocess=={VERSION}", "--no-binary", ":all:",
                 "--no-deps", "--dest", dest],
                check=True, stdout=sys.stderr)
        with tarfile.open(sdist) as t:
            t.extractall(dest, filter="data")
    source = open(conn, encoding="utf-8").read()
    # CPython 3.12's handshake: a prefixed challenge and digest names.
    for needle in ("def _get_digest_name_and_payload",
                   "message = b'{%s}%s' % (digest_name.encode('ascii'), message)",
                   "_ALLOWED_DIGESTS"):
        if needle not in source:
            sys.exit(f"{conn} lacks {needle!r}: not CPython 3.12's handshake")
    print(root)


if __name__ == "__main__":
    main()

"""Helper processes of the benchmarks (never imported; run as a script by benchmarks/_timing.py).

python benchmarks/_child.py run RESULT.json TIMEOUT -- COMMAND ...
    Run COMMAND and write {"seconds", "returncode", "maxrss_mib", "timed_out"} to
    RESULT.json. The clock covers COMMAND alone (not this wrapper's start-up), and
    ``maxrss_mib`` is getrusage(RUSAGE_CHILDREN).ru_maxrss after COMMAND ends: the peak
    resident memory of the largest single process among COMMAND and the descendants it
    waited for (kernels, worker processes), not their sum.

python benchmarks/_child.py execute NOTEBOOK
    Execute NOTEBOOK once with nbclient (kernel python3, in the notebook's folder), the
    floor of the grading figures. Exit 1 if a cell raises.
"""

import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path


def run(result_path: str, timeout: float, command: list[str]) -> int:
    start = time.perf_counter()
    # A new session: on a timeout the whole group (the command and its kernels) is stopped.
    proc = subprocess.Popen(command, start_new_session=True)

    def stop(signum, frame):  # the bench was stopped: so is the command's whole group
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    timed_out = False
    try:
        returncode = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        os.killpg(proc.pid, signal.SIGKILL)
        returncode = proc.wait()
    seconds = time.perf_counter() - start
    maxrss_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
    result = {
        "seconds": seconds,
        "returncode": returncode,
        "maxrss_mib": maxrss_kib / 1024,
        "timed_out": timed_out,
    }
    Path(result_path).write_text(json.dumps(result), encoding="utf-8")
    return 0


def execute(notebook: str) -> int:
    import nbclient
    import nbformat

    path = Path(notebook).resolve()
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=60, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as err:
        print(f"{path.name}: {str(err).splitlines()[-1] if str(err) else err!r}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str]) -> int:
    if len(argv) >= 4 and argv[0] == "run" and argv[3] == "--":
        return run(argv[1], float(argv[2]), argv[4:])
    if len(argv) == 2 and argv[0] == "execute":
        return execute(argv[1])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Run a benchmark grid's runs as separate processes, a few side by side ("lanes").

On a machine of few cores the quality grid is fastest as one single-threaded process per core:
each run is a small model whose kernels do not scale over threads, and two multi-threaded
processes side by side fight for the same cores. :func:`run_in_lanes` takes the runs in order
from one queue, so the first runs of the grid (the first seeds of every method, whose paired
differences come first) finish first whatever each run's length, and a lane that finishes early
takes the next run instead of waiting.
"""
import os
import os.path as osp
import subprocess
import threading
import time
from typing import Dict, List, NamedTuple, Optional, Sequence


class LaneRun(NamedTuple):
    """One run of a grid, as a lane starts it.

    Attributes:
        name (str): Names the run in progress lines and its log file (``LOG_DIR/NAME.log``).
        command (list[str]): The process to start.
    """
    name: str
    command: List[str]


def run_in_lanes(runs: Sequence[LaneRun],
                 lanes: int,
                 log_dir: str,
                 threads: int = 1,
                 cwd: Optional[str] = None) -> Dict[str, int]:
    """Run ``runs`` in order, at most ``lanes`` processes at a time, each with ``threads``
    OpenMP / MKL threads and its output in its own log file.

    Args:
        runs (Sequence[LaneRun]): The runs, in the order they should start.
        lanes (int): How many processes run side by side.
        log_dir (str): Folder of the runs' logs (``NAME.log``: stdout and stderr).
        threads (int): ``OMP_NUM_THREADS`` and ``MKL_NUM_THREADS`` of every run. Defaults to 1.
        cwd (str, optional): Working folder of the runs. Defaults to the current one.

    Returns:
        dict: ``{name: exit status}`` of every run, in the order they finished.
    """
    if lanes < 1 or threads < 1:
        raise ValueError(f'lanes and threads must be at least 1, got {lanes} and {threads}')
    names = [run.name for run in runs]
    if len(set(names)) != len(names):
        raise ValueError(f'every run needs its own name (its log file), got {names}')
    os.makedirs(log_dir, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    pending, statuses, lock = list(runs), {}, threading.Lock()

    def say(line: str) -> None:
        with lock:  # one whole line at a time from every lane
            print(line, flush=True)

    def lane(index: int) -> None:
        while True:
            with lock:
                if not pending:
                    return
                run = pending.pop(0)
            log = osp.join(log_dir, f'{run.name}.log')
            say(f'[lanes] lane {index}: {run.name} started (log {log})')
            start = time.time()
            with open(log, 'w') as out:
                status = subprocess.run(
                    run.command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT).returncode
            minutes = (time.time() - start) / 60
            with lock:
                statuses[run.name] = status
            result = 'done' if status == 0 else f'FAILED (exit {status}, see {log})'
            say(f'[lanes] lane {index}: {run.name} {result} in {minutes:.1f} min')

    workers = [threading.Thread(target=lane, args=(i, )) for i in range(min(lanes, len(runs)))]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return statuses

"""The PyTorch side of `npm run bench:gemm` (never a CI requirement): one process per round.

Argument: a JSON task {"shapes": [[M, K, N, "nn"|"nt"|"tn"|"tt"], ...], "reps": n}; prints `RESULT {json}` with the
CPU milliseconds of one torch.matmul per shape (median over reps after a warm-up), on 1 thread. A transposed
operand is a transposed view (t()), as the int21 side passes transA/transB: no copy is timed.
"""

import json
import sys
import time


def cpu_ms():
    return time.process_time() * 1000.0


def main():
    task = json.loads(sys.argv[1])
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(0)
    out = []
    for m, k, n, t in task["shapes"]:
        a = torch.randn(k, m).t() if t[0] == "t" else torch.randn(m, k)
        b = torch.randn(n, k).t() if t[1] == "t" else torch.randn(k, n)
        c = torch.empty(m, n)
        for _ in range(3):
            torch.matmul(a, b, out=c)
        cpu, wall = [], []
        for _ in range(int(task["reps"])):
            c0, t0 = cpu_ms(), time.perf_counter()
            torch.matmul(a, b, out=c)
            wall.append((time.perf_counter() - t0) * 1000)
            cpu.append(cpu_ms() - c0)
        cpu.sort()
        wall.sort()
        out.append({"shape": [m, k, n, t], "cpuMs": cpu[len(cpu) // 2], "wallMs": wall[len(wall) // 2]})
    print("RESULT " + json.dumps({"torch": torch.__version__, "results": out}), flush=True)


main()

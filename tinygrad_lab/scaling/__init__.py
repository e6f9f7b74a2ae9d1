"""Memory and throughput against model size: `tinygrad-lab bench scaling` and
`tinygrad-lab estimate`.

    grids.py      the sizes per family (MLP width/depth, CNN channels, GPT d_model/layers/context,
                  batch); the default grid and --quick
    workloads.py  one step of a size in tinygrad_lab (model, Adam, synthetic batch)
    torch_models.py  the same sizes in PyTorch (imported only in a PyTorch child)
    child.py      one size in one process: times, memory, FLOPs, RSS as one JSON line
    sweep.py      the sweep: children alternating, progress, rows written as they finish, resume
    fit.py        least-squares fits (overhead + FLOPs / rate, power laws, crossovers)
    report.py     the fits of a sweep's rows; markdown
    plot.py       throughput, memory and roofline plots (matplotlib, the `plot` extra)
    estimate.py   memory by category and time per epoch of a model, from a sweep's fit

`tinygrad-lab bench distributed`: data-parallel steps on 1 and 2 MPI ranks, and on paper.

    distributed_bench.py  the runner: `mpiexec -n R` children, rows, JSON and markdown
    distributed_child.py  one rank of one run (started by mpiexec)
    allreduce.py          ring all-reduce bytes and time at N ranks on stated networks
"""

from tinygrad_lab.scaling.grids import FAMILIES, GRIDS, QUICK_GRIDS, Size, grid
from tinygrad_lab.scaling.sweep import SweepSettings, default_out, run_sweep

__all__ = ["FAMILIES", "GRIDS", "QUICK_GRIDS", "Size", "SweepSettings", "default_out", "grid",
           "run_sweep"]

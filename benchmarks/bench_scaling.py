"""Memory and throughput against model size, ours beside PyTorch: `tinygrad-lab bench scaling`.

    python benchmarks/bench_scaling.py --threads 2 [--quick] [--families mlp cnn gpt]
        [--device cpu|cuda] [--reference] [--no-torch] [--resume] [--out DIR]

The sweep lives in the package (tinygrad_lab/scaling/), so it also runs from an installed
wheel; this script only forwards its arguments. Results: benchmarks/results/scaling[-quick]/
(scaling.json, scaling.csv, scaling.md, throughput.png, memory.png, roofline.png).
"""

from __future__ import annotations

import sys

from tinygrad_lab.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "scaling", *sys.argv[1:]]))

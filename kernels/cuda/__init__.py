"""Hand-written CUDA kernels, imported only as `tinygrad_lab.kernels.cuda`: the GPU counterparts of
the Numba kernels one level up, under the same names, signatures and contracts.

One family per module (activations, softmax, layernorm, attention, embedding, optim, conv), each
holding its CUDA C source (`CudaSource`, templates over float/double), thin Python launchers
named like the references, and a `KERNELS` dict of warm-up arguments. `CUDA_KERNELS` collects
those dicts on first use; the device registry hands it to the "cuda" device type
(tinygrad_lab.backends). Importing a module imports neither CuPy nor compiles anything: a source
compiles (NVRTC, through `cupy.RawModule`) at its first launch.
"""

from tinygrad_lab.kernels import CUDA_KERNELS

__all__ = ["CUDA_KERNELS"]

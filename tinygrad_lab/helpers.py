"""Process-wide switches (DEBUG, KERNELS, threads) and a memory probe for leak checks.

Read once from the environment at import, changed at run time through the functions here, so
that the benchmarks and the tests flip exactly the same switches a user does.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import sys
from collections.abc import Iterator


def warn(msg: str) -> None:
    """One line on stderr, `tinygrad_lab: warning: ...` (no traceback, no source line)."""
    print(f"tinygrad_lab: warning: {msg}", file=sys.stderr)


def _env_int(name: str, default: int, minimum: int | None = None,
             fallback: str | None = None) -> int:
    """An integer environment variable; a bad value (not an integer, or below `minimum`) is one
    warning line and the default, never a traceback at import."""
    raw = os.environ.get(name, "")
    if raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        warn(f"environment variable {name}={raw!r} is not an integer; "
             f"{fallback or f'using {default}'}")
        return default
    if minimum is not None and value < minimum:
        warn(f"environment variable {name}={raw!r} must be >= {minimum}; "
             f"{fallback or f'using {default}'}")
        return default
    return value


DEBUG: int = _env_int("DEBUG", 0, minimum=0)
"""0 quiet; 1 backend and device choices; 2 one line per op call; 3 also saved bytes."""

_KERNELS: bool = _env_int("TINYGRAD_LAB_KERNELS", 1) != 0
"""The kernel switch a thread starts with (TINYGRAD_LAB_KERNELS; 0 = the NumPy reference)."""


_switch: contextvars.ContextVar[bool] = contextvars.ContextVar("tinygrad_lab_kernels",
                                                             default=_KERNELS)
"""The kernel switch, one per thread (as PyTorch's grad mode): `with tl.reference():` in one
thread leaves the others on kernels; a new thread starts from _KERNELS."""
kernels_switch = _switch.get
"""The switch of this thread (backends key their caches of resolved functions by it)."""

_switch_listeners: list = []
"""Callables run after the kernel switch flips (in the thread that flipped it)."""


def on_switch(callback) -> None:  # noqa: ANN001
    _switch_listeners.append(callback)


def kernels_enabled() -> bool:
    """Whether named array functions run their kernels in this thread."""
    return _switch.get()


def set_kernels(enabled: bool) -> None:
    """Turn the hand-written kernels on or off (off = the NumPy reference path) in this thread."""
    _switch.set(bool(enabled))
    for callback in _switch_listeners:
        callback()


@contextlib.contextmanager
def reference() -> Iterator[None]:
    """Run the block on the pure-NumPy reference path: `with tl.reference(): ...` (this thread)."""
    previous = _switch.get()
    set_kernels(False)
    try:
        yield
    finally:
        set_kernels(previous)


@contextlib.contextmanager
def use_kernels() -> Iterator[None]:
    """Run the block with kernels on, whatever the environment said (this thread)."""
    previous = _switch.get()
    set_kernels(True)
    try:
        yield
    finally:
        set_kernels(previous)


def set_num_threads(n: int) -> None:
    """One thread count for Numba's parallel kernels and for BLAS (when threadpoolctl is there).

    More threads than the cores this process may run on (`available_cores`) only make the pools
    fight over them (14-58x slower measured), so the count is capped there with a one-line
    warning; so is a Numba pool smaller than the count (NUMBA_NUM_THREADS), where kernels and
    BLAS would otherwise run on different counts without a word. BLAS reads OMP_NUM_THREADS /
    OPENBLAS_NUM_THREADS only when it loads, so for a fixed count from the start set
    TINYGRAD_LAB_THREADS before importing; this function also changes a running process where
    it can.
    """
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"thread count must be an int, got {n!r}")
    if n < 1:
        raise ValueError(f"thread count must be >= 1, got {n}")
    cores = available_cores()
    if n > cores:
        warn(f"{n} threads asked for, but this process may run on {cores} "
             f"core{'s' if cores != 1 else ''}: using {cores}")
        n = cores
    global _threads
    _threads = n
    if "numba" in sys.modules or _numba_available():
        import numba

        pool = numba.config.NUMBA_NUM_THREADS
        numba.set_num_threads(min(n, pool))
        if pool < n:
            warn(f"Numba's pool has {pool} thread{'s' if pool != 1 else ''} "
                 f"(NUMBA_NUM_THREADS): kernels run on {pool}, BLAS on {n}")
    import threadpoolctl

    threadpoolctl.threadpool_limits(n)
    blas = _blas_threads()
    if blas is not None and blas != n:
        warn(f"BLAS runs on {blas} thread{'s' if blas != 1 else ''}, not {n} "
             "(its library caps the count)")


def _numba_available() -> bool:
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


def _first_int(raw: str | None) -> int:
    """The count in OMP_NUM_THREADS-style values ("4", or "4,2" for nested teams); 0 if none."""
    try:
        return max(0, int((raw or "").split(",")[0].strip()))
    except ValueError:
        return 0


def _default_threads() -> int:
    """TINYGRAD_LAB_THREADS (capped at the cores available), else what NUMBA_NUM_THREADS or
    OMP_NUM_THREADS already tell the pools, else the cores this process may run on."""
    n = _env_int("TINYGRAD_LAB_THREADS", 0, minimum=0,
                 fallback="ignoring it (one thread per available core)")
    if n > 0:
        cores = available_cores()
        if n > cores:
            warn(f"TINYGRAD_LAB_THREADS={n}, but this process may run on {cores} "
                 f"core{'s' if cores != 1 else ''}: using {cores}")
            n = cores
        return n
    for var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS"):
        n = _first_int(os.environ.get(var))
        if n > 0:
            return n
    return available_cores()


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS tells it)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


_threads: int = _default_threads()


def num_threads() -> int:
    """The thread count the engine was told to use (Numba kernels and BLAS): set_num_threads's,
    else TINYGRAD_LAB_THREADS, NUMBA_NUM_THREADS or OMP_NUM_THREADS, else the cores available."""
    return _threads


def _blas_threads() -> int | None:
    """The thread count BLAS runs on now (threadpoolctl), None where it cannot tell."""
    try:
        import threadpoolctl
    except ImportError:
        return None
    counts = [int(info["num_threads"]) for info in threadpoolctl.threadpool_info()
              if info.get("user_api") == "blas"]
    return max(counts) if counts else None


def effective_threads() -> tuple[int | None, int | None]:
    """(Numba's, BLAS's) thread counts as the pools report them now; None for a pool that is
    not there (Numba not installed, no BLAS threadpoolctl can see)."""
    numba_count: int | None = None
    if _numba_available():
        import numba

        numba_count = int(numba.get_num_threads())
    return numba_count, _blas_threads()


def thread_banner() -> str:
    """`2 threads (Numba 2, BLAS 2)`: the engine's count and what each pool really runs on."""
    numba_count, blas = effective_threads()
    parts = [f"Numba {numba_count if numba_count is not None else 'n/a'}",
             f"BLAS {blas if blas is not None else 'n/a'}"]
    return f"{_threads} thread{'s' if _threads != 1 else ''} ({', '.join(parts)})"


def apply_thread_env() -> None:
    """Set up the two thread pools (Numba's OpenMP team, BLAS's) so they share the cores.

    Both pools spin-wait after each call by default. Two spinning pools on the same cores starve
    each other: a step that alternates BLAS matmuls and parallel kernels ran 5-6x slower on 2
    threads than on 1. So idle OpenMP threads sleep (OMP_WAIT_POLICY=PASSIVE) and OpenBLAS
    threads spin only briefly (OPENBLAS_THREAD_TIMEOUT=4, 2^4 cycles). A sleeping team costs
    20-50 us to wake for each parallel kernel, so OpenMP threads first spin a little
    (GOMP_SPINCOUNT=3000, a few microseconds): enough to catch the next kernel of a run of them,
    too short to starve BLAS (2 threads, same-run A/B: the CNN step 14.3 -> 12.2 ms and 15.8 ->
    12.1 ms, the mini-GPT's 3-5 % faster, the MLP's and the wide GPT's within 1 %). Variables the
    user set win.
    BLAS reads its variables when NumPy loads it: importing tinygrad_lab first covers that;
    `set_num_threads` fixes the count later where threadpoolctl can.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("GOMP_SPINCOUNT", "3000")
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
    told = any(_first_int(os.environ.get(var)) > 0 for var in
               ("TINYGRAD_LAB_THREADS", "NUMBA_NUM_THREADS", "OMP_NUM_THREADS"))
    # a count from any of them, or a CPU affinity narrower than the machine, goes to every pool
    n = _threads if told or available_cores() < (os.cpu_count() or 1) else 0
    if n > 0:
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                    "NUMBA_NUM_THREADS"):
            os.environ.setdefault(var, str(n))
        if "numpy" in sys.modules:  # BLAS already loaded: its variables came too late
            import threadpoolctl

            threadpoolctl.threadpool_limits(n, user_api="blas")


_numba_cache_checked = False


def _writable_dir(path: str) -> bool:
    """Whether `path` exists or can be made, and a file can be written in it."""
    import tempfile

    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError:
        return False
    return True


def choose_numba_cache(package_dir: str) -> str | None:
    """Where Numba can cache the kernels compiled from `package_dir`: None where its own choice
    works (NUMBA_CACHE_DIR set, or a writable __pycache__ beside the sources), else a writable
    directory: $XDG_CACHE_HOME (or ~/.cache)/tinygrad_lab/numba, else one under the temp dir;
    "" where nothing is writable (compile without caching). Numba's own user-wide fallback sits
    under HOME too, so a read-only install with HOME=/ would otherwise fail on the first kernel
    with "cannot cache function ...: no locator available"."""
    if os.environ.get("NUMBA_CACHE_DIR", "").strip():
        return None
    pycache = os.path.join(package_dir, "__pycache__")
    if (os.access(pycache, os.W_OK) if os.path.isdir(pycache) else os.access(package_dir,
                                                                             os.W_OK)):
        return None
    import tempfile

    base = os.environ.get("XDG_CACHE_HOME", "").strip() or os.path.join(
        os.path.expanduser("~"), ".cache")
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    for path in (os.path.join(base, "tinygrad_lab", "numba"),
                 os.path.join(tempfile.gettempdir(), f"tinygrad_lab-{uid}", "numba")):
        if _writable_dir(path):
            return path
    return ""


KERNEL_FINGERPRINT_FILE = "tinygrad_lab-kernels.fingerprint"


def kernel_fingerprint(package_dir: str) -> str:
    """A hash of every kernel module's source. Numba's cache checks only the stamp of the file
    that defines a kernel, but a kernel compiles in the helpers it calls (`_math.exp`): after an
    edit of `_math.py` the callers' cached machine code would be stale, and silently used."""
    import hashlib

    digest = hashlib.sha256()
    for name in sorted(os.listdir(package_dir)):
        if name.endswith(".py"):
            digest.update(name.encode())
            with open(os.path.join(package_dir, name), "rb") as f:
                digest.update(f.read())
    return digest.hexdigest()[:16]


def drop_stale_kernel_cache(cache_dir: str, package_dir: str) -> None:
    """Delete the compiled kernels (*.nbi, *.nbc) under `cache_dir`, a directory that holds only
    this package's kernels, when they were compiled from other kernel sources than these (the
    fingerprint file there says from which); then record these sources' fingerprint. Best
    effort: a directory that cannot be read or written is left as it is."""
    fingerprint = kernel_fingerprint(package_dir)
    marker = os.path.join(cache_dir, KERNEL_FINGERPRINT_FILE)
    try:
        with open(marker) as f:
            if f.read().strip() == fingerprint:
                return
    except OSError:
        pass
    try:
        for root, _, files in os.walk(cache_dir):
            for name in files:
                if name.endswith((".nbi", ".nbc")):
                    with contextlib.suppress(FileNotFoundError):  # another process was first
                        os.remove(os.path.join(root, name))
        os.makedirs(cache_dir, exist_ok=True)
        tmp = f"{marker}.{os.getpid()}"
        with open(tmp, "w") as f:
            f.write(fingerprint + "\n")
        os.replace(tmp, marker)
    except OSError:
        return


def setup_numba_cache(package_dir: str | None = None) -> None:
    """Point Numba's cache somewhere writable before any `@njit(cache=True)` kernel module is
    imported (Numba picks the cache directory when the decorator runs), for the kernels in
    `package_dir` (default: tinygrad_lab.kernels, found without importing it); see
    choose_numba_cache. A user cache directory is taken silently, a temp directory or no cache
    with one warning. Kernels compiled from other kernel sources are dropped first
    (drop_stale_kernel_cache; not in a NUMBA_CACHE_DIR the user chose, which may hold other
    projects' kernels). `import tinygrad_lab` runs this."""
    global _numba_cache_checked
    if _numba_cache_checked:
        return
    _numba_cache_checked = True
    if package_dir is None:
        import importlib.util

        spec = importlib.util.find_spec("tinygrad_lab.kernels")
        if spec is None or not spec.submodule_search_locations:
            return
        package_dir = list(spec.submodule_search_locations)[0]
    path = choose_numba_cache(package_dir)
    if path is None:
        if not os.environ.get("NUMBA_CACHE_DIR", "").strip():  # Numba's __pycache__ beside them
            drop_stale_kernel_cache(os.path.join(package_dir, "__pycache__"), package_dir)
        return
    if path:
        drop_stale_kernel_cache(path, package_dir)
        os.environ["NUMBA_CACHE_DIR"] = path
        if "numba" in sys.modules:  # Numba read its variables already
            import numba

            numba.config.CACHE_DIR = path
        if not path.startswith(os.environ.get("XDG_CACHE_HOME", "").strip() or
                               os.path.join(os.path.expanduser("~"), ".cache")):
            warn(f"{package_dir} is read-only and there is no writable user cache directory: "
                 f"compiled kernels are cached in {path} (set NUMBA_CACHE_DIR to choose)")
        return
    warn(f"{package_dir} is read-only and no cache directory is writable: kernels compile "
         "without a cache (set NUMBA_CACHE_DIR to a writable directory)")
    try:
        from numba.core import dispatcher
    except ImportError:
        return
    dispatcher.Dispatcher.enable_caching = lambda self: None  # type: ignore[method-assign]


def log(msg: str) -> None:
    """The one place the engine prints diagnostics (stderr, so stdout stays the user's)."""
    print(msg, file=sys.stderr)


def live_tensor_bytes() -> int:
    """Bytes held by every live Tensor's array (and its .grad), by optimizer state and by saved
    arrays of graphs not yet walked, each buffer counted once (tinygrad_lab.memory.live_arrays).

    Walks the garbage collector's objects: slow, meant for leak checks, not for hot paths.
    """
    from tinygrad_lab.memory.ledger import live_arrays, owner

    seen: set[int] = set()
    total = 0
    for _device, _category, arr in live_arrays():
        base = owner(arr)
        if id(base) not in seen:
            seen.add(id(base))
            total += int(getattr(base, "nbytes", 0))
    return total

"""Resident memory of this process: sampled peak (psutil) and the OS lifetime peak."""

from __future__ import annotations

import sys
import threading

import psutil

try:
    import resource
except ImportError:  # Windows has no getrusage
    resource = None

SAMPLER_THREAD_NAME = "siamcl-resource-sampler"


def os_peak_rss_bytes() -> int | None:
    """The OS's peak resident memory of this process over its whole lifetime, or ``None``.

    ``ru_maxrss`` never goes down: it only says something about a block of work when it
    rose during that block (then the new peak was reached inside the block).
    """
    if resource is None:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024  # macOS: bytes


class PeakRssSampler:
    """Tracks the largest resident set size of this process seen by ``sample``.

    ``run_every`` starts a daemon thread that samples every ``interval`` seconds until
    ``stop``.
    """

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.peak_bytes = 0
        self._process = psutil.Process()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self) -> int:
        """Read the current RSS, keep it if it is a new peak, and return it."""
        rss = self._process.memory_info().rss
        self.peak_bytes = max(self.peak_bytes, rss)
        return rss

    def run_every(self) -> None:
        """Sample now, then on a background thread until ``stop``."""
        if self._thread is not None:
            raise RuntimeError("the sampler thread is already running")
        self._stop.clear()
        self.sample()
        self._thread = threading.Thread(target=self._loop, name=SAMPLER_THREAD_NAME, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread (waiting for it to finish) and take a last sample."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.sample()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

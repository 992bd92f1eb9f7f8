"""Torch's intra-op thread count, set deliberately (``model.threads``, ``--threads``).

torch defaults to one thread per core. On a host that also runs brokers, other daemons or
other jobs, those threads contend for the same cores and a small model trains several
times slower than on one thread (bench/README.md, "Torch threads"). This is the one
place that calls ``torch.set_num_threads``.
"""

from __future__ import annotations

import os

import torch

AUTO_MAX = 2  # "auto": at most this many threads, fewer on a smaller host


def resolve_threads(threads: int | str, cpu_count: int | None) -> int:
    """The thread count `threads` (a count or "auto") means on a host with `cpu_count` cores."""
    if threads == "auto":
        return max(1, min(AUTO_MAX, cpu_count or 1))
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f'threads must be a whole number >= 1 or "auto", got {threads!r}')
    return threads


def use_threads(threads: int | str) -> int:
    """Set torch's intra-op thread count for this process; returns the count now in force."""
    n = resolve_threads(threads, os.cpu_count())
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n

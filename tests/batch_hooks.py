"""Worker start-up hooks for the batch tests (Ray runs them in each worker process).

``kill_on_poison``: a file named ``poison*`` kills the worker process that picks it up, as a
crash inside a decoder or the out-of-memory killer would.
"""

from __future__ import annotations

import os


def kill_on_poison() -> None:
    from vidcolor.batch import worker

    original = worker.ColorizeWorker.start

    def start(self, item, tmp, chunk_seconds):  # type: ignore[no-untyped-def]
        if item.source.name.startswith("poison"):
            os._exit(9)
        return original(self, item, tmp, chunk_seconds)

    worker.ColorizeWorker.start = start  # type: ignore[method-assign]

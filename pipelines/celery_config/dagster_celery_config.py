"""The Celery settings of this project's workers, read by ``dagster_celery.app`` under this exact
module name when its directory is on ``PYTHONPATH`` (``python -m pipelines.worker`` puts it there).

The broker comes from the environment, never from a file: its URL may hold a password.
"""

import os

broker_url = os.environ["SYNCTERA_CELERY_BROKER"]
result_backend = os.environ.get("SYNCTERA_CELERY_BACKEND") or "rpc://"
# One step at a time per worker process: a step is a long fetch, never worth prefetching another.
worker_prefetch_multiplier = 1
# A step a worker took is acknowledged when it ends, so a worker killed mid-step gives it back.
task_acks_late = True
task_reject_on_worker_lost = True
# A pool process whose peak RSS passed this (KiB) is replaced after its step: a fetch or a publish
# leaves its heap at its high mark, which every later step would sit on (at 2,000 accounts × 365
# days the worker's tree peaked at 538 MiB PSS, 462 with this; BENCHMARKS.md, Scale-out). Light steps
# keep their process and its imports (~1.5 s of CPU for each new one).
worker_max_memory_per_child = 300 * 1024

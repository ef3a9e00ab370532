"""What a trial is given besides its config: its CPUs, GPUs and workers, and the driver's environment."""

from __future__ import annotations

import os
from dataclasses import dataclass

from sspa_ray.errors import SpecError

# Environment variables of the driver that every trial sees too (cache dir, data root, test hooks).
ENV_PREFIX = "SSPA_"
# ... and the object store's endpoint and region, so that sspa-ray's own reads and writes in a trial
# reach the store that Ray's (whose filesystem the driver resolved and pickled) reach. Credentials are
# never forwarded: the plan is pickled into tuner.pkl, and a Ray Job's environment is on its dashboard.
STORE_ENV = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_DEFAULT_REGION")


def forwarded_env() -> dict[str, str]:
    """The driver's environment variables that every trial (and a Ray Job's driver) gets too."""
    return {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIX) or k in STORE_ENV}


@dataclass(frozen=True)
class Resources:
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    workers_per_trial: int = 0     # 0: the engine runs in the trial process; N: a TorchTrainer of N workers
    max_concurrent: int = 0        # 0: as many as the cluster's resources allow
    max_failures: int = 2

    def check(self) -> Resources:
        if self.cpus_per_trial <= 0:
            raise SpecError(f"--cpus-per-trial {self.cpus_per_trial} is invalid: give a number > 0, e.g. 1")
        if self.gpus_per_trial < 0:
            raise SpecError(f"--gpus-per-trial {self.gpus_per_trial} is invalid: give 0, a fraction such as 0.25, or a whole number")
        if self.gpus_per_trial > 1 and not float(self.gpus_per_trial).is_integer():
            raise SpecError(f"--gpus-per-trial {self.gpus_per_trial} is invalid: above 1 it must be a whole number of GPUs")
        if self.workers_per_trial < 0:
            raise SpecError(f"--workers-per-trial {self.workers_per_trial} is invalid: 0 runs in the trial process, N >= 1 uses N Train workers")
        per_worker = self.gpus_per_trial / max(1, self.workers_per_trial)
        if self.workers_per_trial > 1 and self.gpus_per_trial and not float(per_worker).is_integer():
            raise SpecError(f"--gpus-per-trial {self.gpus_per_trial} does not split into whole GPUs for "
                            f"{self.workers_per_trial} DDP workers: give a multiple of --workers-per-trial")
        if self.max_concurrent < 0:
            raise SpecError(f"--max-concurrent {self.max_concurrent} is invalid: give 0 (no limit) or a number >= 1")
        if self.max_failures < 0:
            raise SpecError(f"--max-failures {self.max_failures} is invalid: give 0 (no retries) or more")
        return self

    @property
    def torch_threads(self) -> int:
        """The torch threads of one trial process or Train worker: its share of the trial's CPUs."""
        return max(1, int(self.cpus_per_trial / max(1, self.workers_per_trial)))

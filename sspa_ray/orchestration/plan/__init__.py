"""What an experiment runs, decided and validated before Ray starts, one job per module:

- base.py: ExperimentPlan, what every kind shares (trial configs, names, the experiment directory);
- search.py, ablation.py, suite.py: one plan class per kind (``tune``, ``ablate``, ``ablate --preset paper``);
- resources.py: a trial's CPUs, GPUs and workers, and the environment forwarded to it;
- naming.py: trial names and the identity that finds an ablation's trial from Tune's config;
- persistence.py: experiment.json and spec.yaml, --resume's checks, recovery from the store;
- preflight.py: ASHA's rungs and the datasets' label files, checked before Ray starts;
- prerequisites.py: the synthetic benchmarks and pretrained backbones made first, the horizon notes.

Importing this package imports no Ray (the CLI validates with it before a cluster starts); only
:meth:`ExperimentPlan.param_space` and :meth:`ExperimentPlan.tune_search`, which the driver calls
once Ray is up, import it.
"""

from sspa_ray.orchestration.plan.ablation import AblationPlan
from sspa_ray.orchestration.plan.base import ExperimentPlan
from sspa_ray.orchestration.plan.resources import Resources
from sspa_ray.orchestration.plan.search import REPEAT_INDEX, SearchPlan
from sspa_ray.orchestration.plan.suite import SuitePlan

__all__ = ["REPEAT_INDEX", "AblationPlan", "ExperimentPlan", "Resources", "SearchPlan", "SuitePlan"]

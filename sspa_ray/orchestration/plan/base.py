"""The base of every plan: what an experiment runs, decided and validated before Ray starts.

An :class:`ExperimentPlan` turns a search space or an ablation preset plus the command line into
the trial configurations, the run directory and the resources. Trials receive the plan and
rebuild their config from it with :meth:`ExperimentPlan.trial_config`, so the driver, the trials and
``results.parquet`` all compute a trial's config the same way.

As Optuna has one sampler class per algorithm, each kind of experiment is a subclass that says what
differs (search.py, ablation.py); their callers never ask which kind they hold.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from sspa_ray.config import Config
from sspa_ray.defaults import make_config
from sspa_ray.errors import SpecError
from sspa_ray.orchestration.plan import persistence, prerequisites
from sspa_ray.orchestration.plan.naming import trial_name
from sspa_ray.orchestration.plan.resources import Resources, forwarded_env
from sspa_ray.orchestration.storage import is_uri, storage_join
from sspa_ray.outputs import Kind
from sspa_ray.specs._yaml import name_problem
from sspa_ray.tracking import DEFAULT_LOGGERS

if TYPE_CHECKING:
    from sspa_ray.orchestration.plan.ablation import AblationPlan
    from sspa_ray.orchestration.plan.search import SearchPlan
    from sspa_ray.orchestration.plan.suite import SuitePlan
    from sspa_ray.specs.ablation import AblationSpec
    from sspa_ray.specs.search_space import SearchSpace
    from sspa_ray.specs.suite import Suite

# Ray's experiment state lives here when --storage is not given.
DEFAULT_STORAGE_DIR = "ray"


@dataclass(kw_only=True)
class ExperimentPlan(abc.ABC):
    """What every kind of experiment shares: the experiment directory, Ray's storage, resources,
    the trials' config and names; the subclasses say which trials run and how Tune finds them."""

    kind: ClassVar[Kind]                    # experiment.json's "kind"
    name: str
    target: str
    sets: dict[str, Any]                    # --aux, --data-root and --set, applied last
    seeds: int                              # tune: replicas of each configuration; ablate: as expanded
    spec_text: str                          # the YAML that was run, copied to spec.yaml
    metric: str = "macro_f1"
    mode: str = "max"
    resources: Resources = field(default_factory=Resources)
    out: Path = field(default_factory=Path)  # the experiment directory (tables, results.parquet)
    storage: str = ""                       # Ray's storage_path: a local path or a URI
    env: dict[str, str] = field(default_factory=dict)
    storage_given: bool = False             # --storage was on the command line
    notes: list[str] = field(default_factory=list)  # warnings to print before training (horizon)
    pretrained: list[Any] = field(default_factory=list)  # built-in backbones' recipes to build first
    synthetic: list[tuple[int, float]] = field(default_factory=list)  # (seed, scale) of synthetic benchmarks to generate first
    # --logger: Ray's logger callbacks (sspa_ray.tracking.LOGGERS).
    loggers: list[str] = field(default_factory=lambda: list(DEFAULT_LOGGERS))

    # ---- building ------------------------------------------------------------------------
    @staticmethod
    def for_search(space: SearchSpace, **options: Any) -> SearchPlan:
        from sspa_ray.orchestration.plan.search import SearchPlan

        return SearchPlan.build(space, **options)

    @staticmethod
    def for_ablation(spec: AblationSpec | Suite, **options: Any) -> AblationPlan | SuitePlan:
        """The plan of one preset, or of a suite of presets (--preset paper)."""
        from sspa_ray.orchestration.plan.ablation import AblationPlan
        from sspa_ray.orchestration.plan.suite import SuitePlan
        from sspa_ray.specs.suite import Suite

        return (SuitePlan if isinstance(spec, Suite) else AblationPlan).build(spec, **options)

    def _place(self, out: Path | None, storage: str | None) -> ExperimentPlan:
        if problem := name_problem(self.name):
            raise SpecError(f"--name {problem}")
        self.out = (out or Path("experiments") / self.name).expanduser().resolve()
        self.storage_given = storage is not None
        self.storage = storage or str(self.out / DEFAULT_STORAGE_DIR)
        if not is_uri(self.storage):
            self.storage = str(Path(self.storage).expanduser().resolve())
        self.env = forwarded_env()
        return self

    # ---- what differs per kind -------------------------------------------------------------
    @abc.abstractmethod
    def _distinct_keys(self) -> list[str]:
        """The config keys whose values tell this plan's configurations apart (seeds aside)."""

    @abc.abstractmethod
    def total_trials(self) -> int:
        """How many trials the experiment runs in all."""

    @abc.abstractmethod
    def trial_layers(self, tune_config: Mapping[str, Any]) -> tuple[list[dict[str, Any]], int]:
        """The config layers of one trial (lowest precedence first) and its ablation row (-1: none)."""

    @abc.abstractmethod
    def param_space(self) -> dict[str, Any]:
        """Tune's param_space (Ray's search domains), built on the driver once Ray is up."""

    @abc.abstractmethod
    def tune_search(self, limit: int, slots: Callable[[], int]) -> dict[str, Any]:
        """The search part of Tune's TuneConfig (search_alg, scheduler, num_samples, ...); `limit` is
        --max-concurrent (0: none), `slots` how many trials the cluster runs at once."""

    @abc.abstractmethod
    def describe(self, log: Callable[[str], None]) -> list[Config]:
        """--dry-run: print what runs, one line per trial where there is a list; return the config of
        every trial, to estimate the time with."""

    def trial_feeds(self, tune_config: Mapping[str, Any]) -> str:
        """The table rows a suite's trial fills ('table_5:8 table_8:3'); empty outside a suite."""
        return ""

    def tune_trial_name(self, tune_config: Mapping[str, Any], trial_id: str) -> str:
        """Tune's name (and folder name) of a trial."""
        return self.trial_name(tune_config)

    def _stored(self) -> dict[str, Any]:
        """experiment.json's fields that only some kinds fill."""
        return {"trials": None, "suite": None}

    # ---- what one trial runs ---------------------------------------------------------------
    def varied_keys(self) -> list[str]:
        keys = self._distinct_keys()
        if self.seeds > 1 and "train.seed" not in keys:
            keys.append("train.seed")
        return keys

    def trial_config(self, tune_config: Mapping[str, Any]) -> tuple[Config, int]:
        """The config one trial runs and its ablation row; torch threads and the GPU memory share
        follow the trial's resources."""
        layers, row = self.trial_layers(tune_config)
        cfg = make_config(self.target, *layers)
        res = self.resources
        if "train.num_threads" not in self.sets:
            cfg.set("train.num_threads", res.torch_threads)
        if "train.gpu_share" not in self.sets and res.gpus_per_trial:
            # Trials packed on one GPU each budget their own share of its memory.
            cfg.set("train.gpu_share", min(1.0, res.gpus_per_trial / max(1, res.workers_per_trial)))
        return cfg, row

    def trial_name(self, tune_config: Mapping[str, Any], *, seed: bool = True) -> str:
        """The readable name of a trial (``modules-ssm+fix+pam-s0``, naming.trial_name); without
        `seed`, of its group of seeds."""
        cfg, _ = self.trial_config(tune_config)
        return trial_name(self.name, cfg, self.varied_keys(), seed=seed)

    # ---- the experiment directory ------------------------------------------------------------
    @property
    def experiment_path(self) -> str:
        """Where Ray keeps this experiment's state, trial directories and checkpoints (a URI keeps its
        query at the end: ``s3://bucket/exp/NAME?endpoint_override=...``)."""
        return storage_join(self.storage, self.name)

    def prepare_out(self, *, resume: bool, overwrite: bool) -> str | None:
        """Check --out against --resume/--overwrite and create it (persistence.prepare_out); a line
        for the terminal when --resume recovered a lost --out from the store."""
        return persistence.prepare_out(self, resume=resume, overwrite=overwrite)

    def nothing_to_resume(self) -> str | None:
        """A line for the terminal when --resume finds the experiment finished, every table written
        and no trial to retry (persistence.nothing_to_resume); None when Tune has work left."""
        return persistence.nothing_to_resume(self)

    def mark_finished(self) -> None:
        """Record in experiment.json that results.parquet and every table are written."""
        persistence.mark_finished(self)

    def prepare_node(self) -> None:
        """Generate the synthetic benchmarks and build the built-in pretrained backbones on this node
        before Ray starts, with a progress bar on the terminal and every core free to draw the faces;
        trials on other nodes build their own copy under the same lock."""
        prerequisites.prepare_node(self.synthetic, self.pretrained)

    def save(self) -> None:
        """Write spec.yaml and experiment.json (persistence.save); `sspa-ray report` and --resume read
        them back. With --storage, a copy goes beside Ray's state, so that --resume recovers a lost --out."""
        persistence.save(self)

    def summary(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value, "name": self.name, "target": self.target, "overrides": self.sets,
            "seeds": self.seeds, "storage": self.storage, "experiment_path": self.experiment_path,
            "metric": self.metric, "mode": self.mode, "resources": asdict(self.resources),
            **self._stored(), "loggers": self.loggers,
        }

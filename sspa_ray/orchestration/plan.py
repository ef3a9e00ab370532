"""What an experiment runs, decided and validated before Ray starts.

An :class:`ExperimentPlan` turns a search space or an ablation preset plus the command line into
the trial configurations, the run directory and the resources. Trials receive the plan and
rebuild their config from it with :meth:`ExperimentPlan.trial_config`, so the driver, the trials and
``results.parquet`` all compute a trial's config the same way.

As Optuna has one sampler class per algorithm, each kind of experiment is a subclass that says what
differs: :class:`SearchPlan` (``sspa-ray tune``: a search space), :class:`AblationPlan` (``ablate``:
one preset's rows) and :class:`SuitePlan` (``ablate --preset paper``: several presets' shared
trials). Their callers never ask which kind they hold.

Importing this module imports no Ray (the CLI validates with it before a cluster starts); only
:meth:`ExperimentPlan.param_space` and :meth:`ExperimentPlan.tune_search`, which the driver calls
once Ray is up, import it.
"""

from __future__ import annotations

import abc
import functools
import json
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from sspa_ray.config import MODULES, SYNTHETIC_PRETRAINED, Config, horizon_warning, make_config
from sspa_ray.data import configured_root, data_root, read_listing, synthetic
from sspa_ray.engine import pretrain
from sspa_ray.errors import RunDirError, SpecError
from sspa_ray.orchestration.storage import get_text, is_uri, put_text, storage_join
from sspa_ray.outputs import PLAN_FILE, SPEC_FILE, Kind
from sspa_ray.rundir import prepare_new_run_dir
from sspa_ray.specs._yaml import check_seeds, name_problem
from sspa_ray.specs.ablation import AblationSpec, TrialSpec
from sspa_ray.specs.search_space import SearchSpace
from sspa_ray.specs.suite import Suite, feeds_text
from sspa_ray.tracking import DEFAULT_LOGGERS
from sspa_ray.version import this_run

# Ray's experiment state lives here when --storage is not given.
DEFAULT_STORAGE_DIR = "ray"
# Ray's Repeater (Optuna with --seeds) numbers the replicas of a suggestion under this config key
# (ray.tune.search.repeater.TRIAL_INDEX; named here because this module imports no Ray).
REPEAT_INDEX = "__trial_index__"
# Environment variables of the driver that every trial sees too (cache dir, data root, test hooks).
ENV_PREFIX = "SSPA_"
# ... and the object store's endpoint and region, so that sspa-ray's own reads and writes in a trial
# reach the store that Ray's (whose filesystem the driver resolved and pickled) reach. Credentials are
# never forwarded: the plan is pickled into tuner.pkl, and a Ray Job's environment is on its dashboard.
STORE_ENV = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_DEFAULT_REGION")
# Experiments started before Tune saw the dotted config ran a grid over this key; --resume maps it back.
LEGACY_TRIAL_INDEX = "trial_index"
METHOD_KEY = "method.name"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.+=-]")


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
    # --logger: Ray's logger callbacks (sspa_ray.tracking.LOGGERS); None: an experiment of a version
    # that let Tune pick its default loggers, resumed as it started.
    loggers: list[str] | None = field(default_factory=lambda: list(DEFAULT_LOGGERS))

    # ---- building ------------------------------------------------------------------------
    @staticmethod
    def for_search(space: SearchSpace, **options) -> SearchPlan:
        return SearchPlan.build(space, **options)

    @staticmethod
    def for_ablation(spec: AblationSpec | Suite, **options) -> AblationPlan | SuitePlan:
        """The plan of one preset, or of a suite of presets (--preset paper)."""
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
        """A short readable name from the values that tell trials apart, e.g. ``modules-ssm+fix+pam-s0``.

        Module toggles read as the modules that are on (``none`` when all are off), another method as
        its name (``strategies-scn-...``), other varied keys
        as ``experts=5``, the seed as ``s0``; without `seed` it names the trial's group of seeds.
        """
        cfg, _ = self.trial_config(tune_config)
        keys = [k for k in self.varied_keys() if k != "train.seed"]
        others = [k for k in keys if k not in MODULES and k != METHOD_KEY]
        leaves = [k.rsplit(".", 1)[-1] for k in others]
        parts = [self.name]
        if len(others) < len(keys):  # a module toggle or the method varies: name the method, or its modules that are on
            on = "+".join(short for key, (short, _title) in MODULES.items() if cfg.get(key)) or "none"
            parts.append(on if cfg.method.name == "sspa_jt" else cfg.method.name)
        for key, leaf in zip(others, leaves, strict=True):
            parts.append(f"{leaf if leaves.count(leaf) == 1 else key}={_text(cfg.get(key))}")
        if seed:
            parts.append(f"s{cfg.train.seed}")
        return _UNSAFE.sub("_", "-".join(parts))

    # ---- the experiment directory ------------------------------------------------------------
    @property
    def experiment_path(self) -> str:
        """Where Ray keeps this experiment's state, trial directories and checkpoints (a URI keeps its
        query at the end: ``s3://bucket/exp/NAME?endpoint_override=...``)."""
        return storage_join(self.storage, self.name)

    def prepare_out(self, *, resume: bool, overwrite: bool) -> str | None:
        """Check --out against --resume/--overwrite and create it; nothing is ever silently replaced.
        Returns a line for the terminal when --resume recovered a lost --out from the store."""
        out = self.out
        if resume and overwrite:
            raise RunDirError("--resume and --overwrite contradict each other: give one of them")
        if resume:
            recovered = None if (out / PLAN_FILE).is_file() else self._recover_out()
            if not (out / PLAN_FILE).is_file():
                raise RunDirError(f"--resume: {out} holds no experiment ({PLAN_FILE} is missing); run without --resume to start one")
            self._check_same_as_stored()
            return recovered
        prepare_new_run_dir(out, marker=PLAN_FILE, overwrite=overwrite, what="experiment")
        return None

    def _recover_out(self) -> str | None:
        """Copy experiment.json and spec.yaml back from the store (--storage given), where save()
        put them: --out was on a machine that is gone (the head node of a --submit, a lost cluster)."""
        if not self.storage_given:
            return None
        texts = {name: get_text(storage_join(self.experiment_path, name)) for name in (PLAN_FILE, SPEC_FILE)}
        if texts[PLAN_FILE] is None:
            return None
        self.out.mkdir(parents=True, exist_ok=True)
        for name, text in texts.items():
            if text is not None:
                (self.out / name).write_text(text, encoding="utf-8")
        return f"{self.out} had no {PLAN_FILE}: recovered it and {SPEC_FILE} from {self.experiment_path}"

    def prepare_node(self) -> None:
        """Generate the synthetic benchmarks and build the built-in pretrained backbones on this node
        before Ray starts, with a progress bar on the terminal and every core free to draw the faces;
        trials on other nodes build their own copy under the same lock."""
        for seed, scale in self.synthetic:
            synthetic.ensure(seed, scale)
        for recipe in self.pretrained:
            pretrain.ensure(recipe)

    def save(self) -> None:
        """Write spec.yaml and experiment.json; `sspa-ray report` and --resume read them back. With
        --storage, a copy goes beside Ray's state, so that --resume recovers a lost --out.

        experiment.json's ``runs`` gains one entry per start or resume (its date and code version),
        which the report's provenance line names."""
        path = self.out / PLAN_FILE
        runs = json.loads(path.read_text(encoding="utf-8")).get("runs", []) if path.is_file() else []
        summary = {**self.summary(), "runs": [*runs, this_run()]}
        texts = {SPEC_FILE: self.spec_text, PLAN_FILE: json.dumps(summary, indent=2, sort_keys=True) + "\n"}
        for name, text in texts.items():
            (self.out / name).write_text(text, encoding="utf-8")
            if self.storage_given:
                put_text(storage_join(self.experiment_path, name), text)

    def summary(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value, "name": self.name, "target": self.target, "overrides": self.sets,
            "seeds": self.seeds, "storage": self.storage, "experiment_path": self.experiment_path,
            "metric": self.metric, "mode": self.mode, "resources": asdict(self.resources),
            **self._stored(), "loggers": self.loggers,
        }

    def _check_same_as_stored(self) -> None:
        stored = json.loads((self.out / PLAN_FILE).read_text(encoding="utf-8"))
        if not self.storage_given and stored.get("storage"):
            self.storage = stored["storage"]  # --resume without --storage finds the original storage
        # Tune restores the experiment with the logger callbacks it started with.
        self.loggers = stored.get("loggers")
        stored_spec = (self.out / SPEC_FILE).read_text(encoding="utf-8") if (self.out / SPEC_FILE).is_file() else None
        mine = self.summary()
        for key in ("kind", "name", "target", "overrides", "seeds", "storage"):
            if stored.get(key) != json.loads(json.dumps(mine[key])):
                raise RunDirError(
                    f"--resume: {self.out} was started with {key}={stored.get(key)!r}, this command gives "
                    f"{mine[key]!r}; resume with the original options, or start a new --out"
                )
        if stored_spec is not None and stored_spec != self.spec_text:
            raise RunDirError(f"--resume: the YAML differs from {self.out / SPEC_FILE}, which this experiment ran; "
                              "resume with the original file, or start a new --out")

    # ---- plans pickled by the previous version ------------------------------------------------
    def __new__(cls, *args, **kwargs):
        # Tune's tuner.pkl (read by --resume) of an experiment started when one class served every
        # kind holds an ExperimentPlan, which unpickling creates without arguments; __setstate__
        # then gives it its kind's class.
        return super().__new__(AblationPlan if cls is ExperimentPlan else cls)

    def __setstate__(self, state: dict[str, Any]) -> None:
        if "kind" in state:
            state = _upgraded_state(state)
            self.__class__ = state.pop("__class__")
        self.__dict__.update(state)


@dataclass(kw_only=True)
class SearchPlan(ExperimentPlan):
    """``sspa-ray tune``: a search space's grid or samples, each run ``seeds`` times."""

    kind: ClassVar[Kind] = Kind.TUNE
    space: SearchSpace

    @classmethod
    def build(cls, space: SearchSpace, *, target: str, sets: dict[str, Any], seeds: int,
              out: Path | None, name: str | None, storage: str | None, resources: Resources,
              dry_run: bool = False) -> SearchPlan:
        check_seeds(seeds)
        if seeds > 1 and "train.seed" in space.space:
            raise SpecError(f"{space.path}: --seeds {seeds} replicates train.seed, which the space already varies; drop one")
        configs = space.check_points(target, sets)
        _check_schedule(space, configs, make_config(target, space.fixed, sets))
        _check_data(configs, dry_run=dry_run)
        plan = cls(name=name or space.name, target=target, sets=dict(sets), seeds=seeds,
                   spec_text=space.path.read_text(encoding="utf-8"), metric=space.metric, mode=space.mode,
                   resources=resources.check(), space=space, notes=_notes(configs), pretrained=_recipes(configs),
                   synthetic=_benchmarks(configs))
        return plan._place(out, storage)

    def _distinct_keys(self) -> list[str]:
        return [k for k in self.space.space if k not in self.sets]

    def total_trials(self) -> int:
        grids = [len(d.args) for k, d in self.space.space.items() if d.kind == "grid" and k not in self.sets]
        return math.prod(grids) * self.space.num_samples * self.seeds

    def trial_layers(self, tune_config: Mapping[str, Any]) -> tuple[list[dict[str, Any]], int]:
        point = {k: v for k, v in tune_config.items() if k in self.space.space}
        layers = [self.space.fixed, point, self.sets]
        if "train.seed" in tune_config and "train.seed" not in self.space.space:
            layers.append({"train.seed": tune_config["train.seed"]})
        elif REPEAT_INDEX in tune_config:
            layers.append({"train.seed": self.base_config().train.seed + int(tune_config[REPEAT_INDEX])})
        return layers, -1

    def tune_trial_name(self, tune_config: Mapping[str, Any], trial_id: str) -> str:
        # Sampled values may coincide once rounded into the name: the trial id keeps names apart.
        return f"{self.trial_name(tune_config)}-{trial_id}"

    def base_config(self) -> Config:
        """The config without the space's values: fixed keys and --set."""
        return make_config(self.target, self.space.fixed, self.sets)

    def param_space(self) -> dict[str, Any]:
        from ray import tune

        from sspa_ray.orchestration.searchers import domain

        space = {key: domain(dist) for key, dist in self.space.space.items() if key not in self.sets}
        if self.seeds > 1 and self.space.search != "optuna":  # Optuna's seeds come from its Repeater
            base = self.base_config().train.seed
            space["train.seed"] = tune.grid_search(list(range(base, base + self.seeds)))
        return space

    def tune_search(self, limit: int, slots: Callable[[], int]) -> dict[str, Any]:
        from ray.tune.schedulers import AsyncHyperBandScheduler
        from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter
        from ray.tune.search.optuna import OptunaSearch
        from ray.tune.search.repeater import Repeater

        space = self.space
        seed = self.base_config().train.seed
        num_samples = space.num_samples
        if space.search == "optuna":
            searcher = OptunaSearch(seed=seed)
            if self.seeds > 1:
                # Each suggestion runs once per seed (train.seed = base + REPEAT_INDEX); Optuna learns the mean.
                searcher = Repeater(searcher, repeat=self.seeds, set_index=True)
                num_samples *= self.seeds
            searcher = ConcurrencyLimiter(searcher, max_concurrent=max(limit or slots(), self.seeds))
        else:
            # constant_grid_search: draw the random keys once per sample and run that draw for every grid
            # value, so that the seeds grid replicates one configuration (Ray resamples them otherwise).
            searcher = BasicVariantGenerator(random_state=seed, max_concurrent=limit, constant_grid_search=True)
        scheduler = None
        if space.scheduler == "asha":
            asha = space.asha
            scheduler = AsyncHyperBandScheduler(
                time_attr="epoch", max_t=asha.max_t or self.base_config().train.epochs,
                grace_period=asha.grace_period, reduction_factor=asha.reduction_factor,
            )
        return {"metric": space.metric, "mode": space.mode, "search_alg": searcher, "scheduler": scheduler,
                "num_samples": num_samples}

    def describe(self, log: Callable[[str], None]) -> list[Config]:
        n = self.total_trials()
        log(f"{self.name} on {self.target}: {n} trials ({self.space.search} search"
            f"{f', {self.seeds} seeds each' if self.seeds > 1 else ''}); time at the space's fixed values")
        return [self.base_config()] * n


@dataclass(kw_only=True)
class AblationPlan(ExperimentPlan):
    """``sspa-ray ablate``: one preset's explicit list of trials, one per row, combination and seed."""

    kind: ClassVar[Kind] = Kind.ABLATE
    spec: AblationSpec
    trials: list[TrialSpec]

    @classmethod
    def build(cls, spec: AblationSpec | Suite, *, target: str, sets: dict[str, Any], seeds: int | None,
              out: Path | None, name: str | None, storage: str | None, resources: Resources,
              dry_run: bool = False) -> AblationPlan:
        trials = spec.trials(target, sets, seeds)
        configs = [make_config(target, t.overrides) for t in trials]
        _check_data(configs, dry_run=dry_run)
        plan = cls(name=name or spec.name, target=target, sets=dict(sets), seeds=spec.seeds if seeds is None else seeds,
                   spec_text=spec.text(), metric=spec.metrics[0], mode="max", resources=resources.check(),
                   spec=spec, trials=trials, notes=_notes(configs), pretrained=_recipes(configs),
                   synthetic=_benchmarks(configs))
        return plan._place(out, storage)

    def _distinct_keys(self) -> list[str]:
        return list(dict.fromkeys(k for t in self.trials for k in t.overrides
                                  if len({repr(u.overrides.get(k)) for u in self.trials}) > 1))

    def total_trials(self) -> int:
        return len(self.trials)

    def tune_configs(self) -> list[dict[str, Any]]:
        """What Tune sees of each trial: its dotted config (fixed keys, the row, its `across`
        values, the seed and --set), so Tune's tables, folders and loggers show it."""
        return [dict(t.overrides) for t in self.trials]

    def trial_layers(self, tune_config: Mapping[str, Any]) -> tuple[list[dict[str, Any]], int]:
        trial = self.ablation_trial(tune_config)
        return [trial.overrides], trial.row

    def ablation_trial(self, tune_config: Mapping[str, Any]) -> TrialSpec:
        """The trial of a Tune config: its dotted config, or `trial_index` (an experiment of the previous version)."""
        if LEGACY_TRIAL_INDEX in tune_config:
            return self.trials[int(tune_config[LEGACY_TRIAL_INDEX])]
        return self._trials_by_config[_identity(tune_config)]

    @functools.cached_property
    def _trials_by_config(self) -> dict[str, TrialSpec]:
        return {_identity(t.overrides): t for t in self.trials}

    def param_space(self) -> dict[str, Any]:
        return {}  # the ListSearcher suggests every trial's config

    def tune_search(self, limit: int, slots: Callable[[], int]) -> dict[str, Any]:
        from sspa_ray.orchestration.searchers import ListSearcher

        return {"search_alg": ListSearcher(self.tune_configs()), "num_samples": len(self.trials),
                "max_concurrent_trials": limit or None}

    def _stored(self) -> dict[str, Any]:
        return {**super()._stored(), "trials": len(self.trials)}

    def describe(self, log: Callable[[str], None]) -> list[Config]:
        configs = [make_config(self.target, t.overrides) for t in self.trials]
        log(self._headline(len(configs)))
        varied = [k for k in self.varied_keys() if k != "train.seed"] + (["train.seed"] if self.seeds > 1 else [])
        for i, (trial, cfg) in enumerate(zip(self.trials, configs, strict=True)):
            keys = " ".join(f"{k}={cfg.get(k)}" for k in varied)
            log(f"  {i:3d}  {keys}  -> {self._rows_of(trial)}")
        return configs

    def _headline(self, n: int) -> str:
        return f"{self.name} on {self.target}: {n} trials"

    def _rows_of(self, trial: TrialSpec) -> str:
        """The table row(s) a trial fills, as --dry-run lists them."""
        return f"row {trial.row} [{self.spec.row_name(trial.row)}]"


@dataclass(kw_only=True)
class SuitePlan(AblationPlan):
    """``sspa-ray ablate --preset paper``: the trials of several presets, merged where their
    configurations coincide; each trial's `feeds` names the table rows it fills."""

    spec: Suite

    def trial_feeds(self, tune_config: Mapping[str, Any]) -> str:
        return feeds_text(self.ablation_trial(tune_config).feeds)

    def _stored(self) -> dict[str, Any]:
        return {**super()._stored(), "suite": self.spec.name}

    def describe(self, log: Callable[[str], None]) -> list[Config]:
        configs = super().describe(log)
        shared = [t for t in self.trials if len(t.feeds) > 1]
        log(f"{len(shared)} trials feed more than one table row: " + "; ".join(feeds_text(t.feeds) for t in shared))
        return configs

    def _headline(self, n: int) -> str:
        tables = self.spec.tables
        separate = self.spec.separate_trials(self.target, self.sets, self.seeds)
        return (f"{self.name} on {self.target}: {len(tables)} tables ({', '.join(tables)}), "
                f"{n} distinct trials ({separate} if each table ran on its own)")

    def _rows_of(self, trial: TrialSpec) -> str:
        return ", ".join(f"{table}[{self.spec.tables[table].row_name(row)}]" for table, row in trial.feeds)


def _upgraded_state(state: dict[str, Any]) -> dict[str, Any]:
    """The attributes of a plan pickled by the version with one class for every kind, with the class
    its kind has now: `kind` and a `space`, `suite` or `spec` of which only one was set."""
    state = dict(state)
    kind, suite = state.pop("kind"), state.pop("suite", None)
    if kind == Kind.TUNE:
        state["__class__"] = SearchPlan
    elif suite is not None:
        state.update({"__class__": SuitePlan, "spec": suite})
    else:
        state["__class__"] = AblationPlan
    return state


def _identity(config: Mapping[str, Any]) -> str:
    return json.dumps(dict(config), sort_keys=True, default=str)


def _text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) or value is None else f"{value:g}" if isinstance(value, float) else str(value)



def _check_schedule(space: SearchSpace, configs: list[Config], base: Config) -> None:
    """ASHA's rungs against the trials' epochs and SS stage, before Ray asserts on them mid-start."""
    asha = space.asha
    if asha is None:
        return
    max_t = asha.max_t or base.train.epochs
    source = "max_t" if asha.max_t else "train.epochs"
    if asha.grace_period > max_t:
        raise SpecError(f"{space.path}: grace_period={asha.grace_period} exceeds {source}={max_t}: ASHA could never "
                        f"stop a trial; lower grace_period to at most {max_t} or raise {source}")
    shortest = min(cfg.train.epochs for cfg in configs)
    if max_t > shortest:
        raise SpecError(f"{space.path}: max_t={max_t} exceeds train.epochs={shortest}: trials end before ASHA's "
                        f"last rung; set max_t to at most {shortest} or drop it")
    # Ray's rungs: grace_period * reduction_factor**k below max_t (a trial at max_t ends anyway).
    count = int(math.log(max_t / asha.grace_period) / math.log(asha.reduction_factor) + 1)
    rungs = [asha.grace_period * asha.reduction_factor ** k for k in range(count)]
    rungs = [int(r) if float(r).is_integer() else r for r in rungs if r < max_t]
    selection = max(cfg.train.selection_epochs for cfg in configs)
    if rungs and max(rungs) <= selection:
        raise SpecError(f"{space.path}: every ASHA rung (epochs {', '.join(map(str, rungs))}) falls in the SS stage "
                        f"(train.selection_epochs={selection}), so trials are stopped before PAM acts; raise "
                        f"grace_period above {selection} or lower train.selection_epochs")


def _recipes(configs: Iterable[Config]) -> list[pretrain.Recipe]:
    """The built-in pretrained backbones the trials start from (model.pretrained=synthetic-faces)."""
    return list(dict.fromkeys(pretrain.recipe_for(c) for c in configs if c.model.pretrained == SYNTHETIC_PRETRAINED))


def _benchmarks(configs: Iterable[Config]) -> list[tuple[int, float]]:
    """The synthetic benchmarks (seed, scale) the trials read."""
    return list(dict.fromkeys((c.data.synthetic_seed, c.data.synthetic_scale) for c in configs if c.data.target == "synthetic"))


def _notes(configs: Iterable[Config]) -> list[str]:
    """The distinct horizon warnings of the trials, each printed once by the driver."""
    return list(dict.fromkeys(w for w in map(horizon_warning, configs) if w))


def _check_data(configs: Iterable[Config], *, dry_run: bool = False) -> None:
    """Read the label files of every dataset split the trials use (no images), so a missing folder
    or a malformed line stops the command before Ray starts. The synthetic target is generated.
    A dry run needs no data: without a data root it plans from the official split sizes, and
    checks the data only when a root is given."""
    seen: set[tuple] = set()
    for cfg in configs:
        if cfg.data.target == "synthetic" or (dry_run and configured_root(cfg.data.root) is None):
            continue
        root = data_root(cfg.data.root)
        needed = [(cfg.data.target, "train"), (cfg.data.target, "test")]
        if cfg.data.aux != "none" and cfg.data.aux_ratio > 0:
            needed.append((cfg.data.aux, "train"))
        for dataset, split in needed:
            if (root, dataset, split) not in seen:
                seen.add((root, dataset, split))
                read_listing(dataset, split, root)

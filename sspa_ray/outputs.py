"""The output vocabulary, defined once: metric names, trial statuses, training stages, file names.

Every layer that writes or reads a run folder, an experiment folder, a report or results.parquet
takes its names from here. Statuses and stages are ``str`` enums, so they compare equal to,
hash like and serialise as their plain string values (metrics dicts, JSON and parquet are
unchanged); records store ``.value`` so checkpoints (``torch.load(weights_only=True)``) hold
plain strings only.
"""

from __future__ import annotations

from enum import Enum
from typing import TypedDict


class Word(str, Enum):
    """A str enum that behaves as its value everywhere (f-strings, dict keys, csv, str())."""

    __str__ = str.__str__
    __format__ = str.__format__
    __hash__ = str.__hash__


# The four macro scores of the paper, in table order; the engine reports them every epoch.
METRICS = ("accuracy", "macro_precision", "macro_recall", "macro_f1")
# SSM's selection measured against the ground truth, per epoch (the synthetic benchmark).
SELECTION_FIGURES = ("clean_share", "selection_precision", "selection_recall", "aux_base_rate")
# SCN's relabelling measured against the ground truth, per epoch: the aux share relabelled, the share
# of those relabels that are right, the correct aux labels relabelling broke, the low-importance
# groups' noise rate (against 1 - aux_base_rate).
RELABEL_FIGURES = ("relabelled_share", "relabel_precision", "relabel_broken", "low_importance_noise")
# DCJT's inputs measured against the ground truth (the synthetic benchmark): the RMSE of the target's
# pseudo valence/arousal, and the share of the aux labels it trains with that are the true ones.
DCJT_FIGURES = ("pseudo_va_rmse", "aux_label_accuracy")
# The engine picks its best epoch by this metric (metrics.json "best"); ties keep the earlier epoch.
BEST_BY = "accuracy"


class Status(Word):
    """A trial's status in results.parquet, in the order the tables list them."""

    COMPLETED = "completed"   # all epochs ran
    STOPPED = "stopped"       # ended early by the ASHA scheduler of a tune run
    ERRORED = "errored"       # raised after its retries
    DIVERGED = "diverged"     # NaN/inf loss
    PENDING = "pending"       # not finished (yet)

    def runs_again_on_resume(self) -> bool:
        """--resume runs this trial again: a pending one continues, an errored one is retried."""
        return self in (Status.ERRORED, Status.PENDING)


# Finished for good: no further epoch will be reported.
FINISHED = (Status.COMPLETED, Status.STOPPED, Status.DIVERGED, Status.ERRORED)
# A trial's report carries this key (= 1) when its loss diverged.
DIVERGED_KEY = Status.DIVERGED.value


class Stage(Word):
    """The stage of a training epoch: SSPA-JT's two (paper Algorithm 3), or one for the other methods."""

    SS = "SS"   # sample selection
    PA = "PA"   # paired augmentation
    JOINT = "JT"  # one stage for methods without SSPA-JT's two (SCN before it relabels)
    RELABEL = "RL"  # SCN's epochs that relabel
    AUX_PASS = "AX"  # DCJT's epochs with a class-balanced pass over the aux set after the target's


class Verdict(Word):
    """A paper claim's verdict in claims.md / claims.csv (report/claims.py decides it).

    Holds / contradicted / inconclusive come from a test (a paired t-test by seed, n >= 2). With
    one seed there is no test: the verdict names the sign it saw and says it is only that.
    """

    HOLDS = "holds"
    CONTRADICTED = "contradicted"
    INCONCLUSIVE = "inconclusive"
    SIGN_AS_CLAIMED = "sign only (n=1): as claimed"
    SIGN_OPPOSITE = "sign only (n=1): opposite"
    SIGN_TIED = "sign only (n=1): tied"

    @property
    def is_tested(self) -> bool:
        """Whether a test decided it; a one-seed sign is counted apart and never reads as a finding."""
        return self in (Verdict.HOLDS, Verdict.CONTRADICTED, Verdict.INCONCLUSIVE)

    @property
    def summary_word(self) -> str:
        """How the summary line counts it: "2 hold, 1 contradicted ..." / "3 as claimed, 1 opposite ..."."""
        return "hold" if self is Verdict.HOLDS else self.value.rpartition(": ")[2]


class _EpochCore(TypedDict):
    epoch: int                  # epochs finished, from 1
    stage: str                  # a Stage value
    loss: float                 # the epoch's mean training loss
    clean_share: float | None   # the aux share SSM keeps as clean; None where the method selects nothing
    accuracy: float             # METRICS on the test set after the epoch
    macro_precision: float
    macro_recall: float
    macro_f1: float
    img_per_s: float            # training throughput


class EpochRecord(_EpochCore, total=False):
    """One epoch of a run, as the engine writes it into metrics.json's "history", reports it to
    orchestration (Tune's per-epoch result, Ray's gauges, the progress table) and as
    orchestration/results.py reads it back into results.parquet. The keys below the core are the
    method's figures (SELECTION_FIGURES, RELABEL_FIGURES, DCJT_FIGURES), present where the method measures them."""

    selection_precision: float  # SSM against the ground truth (the synthetic benchmark)
    selection_recall: float
    aux_base_rate: float        # the aux share whose given label is right (SSM's and SCN's truth)
    relabelled_share: float     # SCN's relabelling, against the ground truth where there is one
    relabel_precision: float | None
    relabel_broken: int         # correct aux labels that relabelling changed
    low_importance_noise: float | None
    pseudo_va_rmse: float       # DCJT's inputs against the ground truth
    aux_label_accuracy: float


# Every key an EpochRecord may hold, in its order.
EPOCH_KEYS = tuple(EpochRecord.__annotations__)


class Source(Word):
    """selection.csv's ``source``: which training set a sample came from."""

    TARGET = "target"   # D_T's train split, listed first
    AUX = "aux"         # the aux share (data.aux_ratio), after it


class SelectionRow(TypedDict):
    """One row of selection.csv: a training sample and SSM's verdict on it (as csv reads it back)."""

    path: str     # as the dataset's label file lists it
    source: str   # a Source value
    label: str    # its given label, a class name
    clean: str    # "1": SSM kept it as clean, "0": rejected


# selection.csv's header, in column order.
SELECTION_COLUMNS = tuple(SelectionRow.__annotations__)


# ---- a run folder (`sspa-ray train --out DIR`, and each trial's run/ folder) ---------------------
CONFIG_FILE = "config.json"        # the flat config the run was started with (train's resume marker)
METRICS_FILE = "metrics.json"      # final and best metrics, per class, history
SELECTION_FILE = "selection.csv"   # SSM's clean/noisy split of the training samples
LOG_FILE = "train.log"             # the engine's progress lines
CHECKPOINTS_DIR = "checkpoints"    # epoch_NNNN/ folders
# The files of a finished run that a trial copies next to its Tune results in storage.
RUN_OUTPUTS = (METRICS_FILE, SELECTION_FILE, LOG_FILE)

# ---- an experiment folder (`sspa-ray tune|ablate --out DIR`) --------------------------------------
class Kind(Word):
    """experiment.json's ``kind``: which command started the experiment (--resume and report read it)."""

    TUNE = "tune"       # a search space (sspa-ray tune)
    ABLATE = "ablate"   # an ablation preset or --preset paper (sspa-ray ablate)


# results.parquet's data sizes of a completed trial: target train images, aux train images (after
# data.aux_ratio), test images. The report's provenance line names them.
SIZE_COLUMNS = ("size.target", "size.aux", "size.test")
PLAN_FILE = "experiment.json"      # kind, name, target, overrides, seeds, ... (the resume marker)
SPEC_FILE = "spec.yaml"            # a copy of the YAML that was run
RESULTS_FILE = "results.parquet"   # one row per trial
HANGUP_LOG_FILE = "hangup.log"     # what the command printed after its terminal closed
TABLE_STEM = "table"               # table.md / table.csv / table.tex ...
TABLE_BEST_STEM = "table_best"     # ... and the same at each trial's best epoch
PROVENANCE_FILE = "provenance.json"  # what produced the outputs beside it (CSV has no room for a comment)
REPORT_STEM = "report"             # report.html: every table, claim and plot on one page (report_best.html)
SELECTION_PLOT = "selection.png"
RELABEL_PLOT = "relabel.png"       # SCN's relabelling against the truth, beside SSM's selection plot
SELECTION_GALLERY = "selection_gallery.png"

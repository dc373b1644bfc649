"""The keys of ``report.json`` (named constants: code and tests use these, never string literals).

>>> METRICS, FID, VERDICTS
('metrics', 'fid', 'verdicts')
"""

from __future__ import annotations

# top level
VERSION = "medisynth_version"
CREATED = "created"
INPUTS = "inputs"
OPTIONS = "options"
INTENSITY_WINDOW = "intensity_window"
METRICS = "metrics"
VERDICTS = "verdicts"
DATA_FINDINGS = "data_findings"
TIMINGS = "timings_s"
WARNINGS = "warnings"
READER_STUDY = "reader_study"  # validate --study: the reader study's statistics

# input roles
REAL = "real"
SYNTHETIC = "synthetic"
TRAIN = "train"
HELDOUT = "heldout"
MODEL = "model"  # the model package (--model): path, model_id, family, how the set was made

# metric names (the registry, medisynth.validate.registry.METRICS, holds the metrics by them)
FID = "fid"
KID = "kid"
FRD = "frd"
PRDC = "prdc"
DIVERSITY = "diversity"
MEMORIZATION = "memorization"
PAIRED = "paired"
UTILITY = "utility"
SEGMENTATION = "segmentation"

# inside metrics
VALUE = "value"
EXTRACTOR = "extractor"
PER_PLANE = "per_plane"
RELATIVE_FD = "relative_fd"
SQUARED_DISTANCE = "squared_distance"
FD_SYNTHETIC_TRAIN = "fd_synthetic_train"
FD_HELDOUT_TRAIN = "fd_heldout_train"
KID_MEAN = "mean"
KID_STD = "std"
SYNTHETIC_NN_MEDIAN = "synthetic_nn_median"
REAL_NN_MEDIAN = "real_nn_median"
NN_RATIO = "ratio"
VERDICT = "verdict"
REASONS = "reasons"
PIXELS = "pixels"
FEATURES = "features"
HELDOUT_TRAIN_DUPLICATES = "heldout_train_duplicates"
TRAIN_DUPLICATES = "train_duplicates"

# bootstrap confidence intervals: "<value>_ci": [low, high] beside the value, and one
# "bootstrap" entry per metric saying how they were made
CI_SUFFIX = "_ci"
BOOTSTRAP = "bootstrap"
VALUE_CI = VALUE + CI_SUFFIX
PRECISION_CI = "precision" + CI_SUFFIX
RECALL_CI = "recall" + CI_SUFFIX
DENSITY_CI = "density" + CI_SUFFIX
COVERAGE_CI = "coverage" + CI_SUFFIX
NEAR_COPY_FRACTION = "near_copy_fraction"
NEAR_COPY_FRACTION_CI = NEAR_COPY_FRACTION + CI_SUFFIX
MEAN_CI = "mean" + CI_SUFFIX  # utility: the seed-averaged AUC's interval, inside "auc"

# inside segmentation
CONDITIONS = "conditions"
DICE = "dice"
SETTINGS = "settings"
RULE = "rule"

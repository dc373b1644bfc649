"""The settings every layer reads: strict pydantic models and the generic config helpers.

A leaf of the package (it imports only :mod:`medisynth.errors` and :mod:`medisynth.files`):
the data layer reads :class:`DataConfig`, the GAN families subclass :class:`FamilyConfig`, the
engine reads :class:`TrainConfig`, and :mod:`medisynth.config` assembles them into a run
(it asks the family registry which settings class ``model`` is).

>>> DataConfig(format="slices", path="t1.nii.gz", axis=1).axis
1
>>> d = {"train": {"steps": 3}}
>>> apply_override(d, "train.batch_size=8"); d
{'train': {'steps': 3, 'batch_size': 8}}
>>> try:
...     check_keys(TrainConfig, {"stepz": 10}, "train.")
... except ConfigError as err:
...     print(err)  # doctest: +ELLIPSIS
unknown key 'train.stepz'; did you mean 'steps'? (known keys in 'train': batch_size, ...)
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from medisynth.errors import ConfigError


class StrictModel(BaseModel):
    """Base of every config model: unknown keys are rejected, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class FamilyConfig(StrictModel):
    """Base of the settings of a GAN family; each family subclasses it (see ``medisynth.gans``)."""

    family: str = "dcgan"


#: the ``data.format`` names (each has a loader in :data:`medisynth.data.formats.DATA_FORMATS`)
DataFormat = Literal[
    "medmnist", "folder", "slices", "mni152_views", "paired", "unpaired", "image_mask"
]
#: data formats whose batches are ``{"image", "label"}`` (class-labelled images)
IMAGE_FORMATS = frozenset({"medmnist", "folder", "slices", "mni152_views"})
#: data formats whose batches are ``{"source", "target"}`` (co-registered or drawn apart)
PAIR_FORMATS = frozenset({"paired", "unpaired"})
#: data formats whose batches are ``{"source": one-hot label map, "target"}``
MASK_FORMATS = frozenset({"image_mask"})


def expand_path(path: str) -> Path:
    """A path setting with ``~`` and ``$VARS`` expanded.

    >>> expand_path("~/scans").is_absolute()
    True
    """
    return Path(os.path.expandvars(os.path.expanduser(path)))


class DataConfig(StrictModel):
    """Where the training images come from.

    Attributes:
        format: ``"medmnist"`` (a MedMNIST-layout ``.npz`` at ``path``), ``"folder"`` (a
            folder of images or DICOM files, labelled by class subfolders or a CSV, see
            ``labels``), ``"slices"`` (2D slices of one volume: NIfTI, MGH or a DICOM series
            folder) or ``"mni152_views"`` (axial/coronal/sagittal slices of the MNI152 T1
            template shipped with nilearn; the demo's data, no file needed), ``"paired"``
            (co-registered source/target images for image-to-image translation: ``path`` and
            ``target_path`` are two volumes, two images, or two folders whose files pair up by
            sorted name; volumes give paired slices along ``axis``) or ``"unpaired"`` (the same
            inputs, but each batch draws sources and targets independently, e.g. CycleGAN) or
            ``"image_mask"`` (mask -> image synthesis: ``path`` holds the images and
            ``mask_path`` their label maps, pairing by sorted name; see
            :mod:`medisynth.data.image_mask`). Each format is read by its loader in
            :data:`medisynth.data.formats.DATA_FORMATS`.
        path: the data file; ``~`` and environment variables are expanded.
        target_path: for ``paired``/``unpaired``: the target-domain file or folder.
        split: which split of the file to train on.
        image_size: resize images to this size (pixels per side); ``None`` keeps the stored size.
        class_names: names of the classes, in label order; default: the label numbers.
        labels: for ``folder``: ``"subfolders"``, ``"none"`` or the path of a label CSV.
        axis: for ``slices`` (and volume pairs): the spatial axis to slice along.
        min_foreground: for ``slices`` (and volume pairs): skip slices with less anatomy than
            this fraction.
        modality: the modality, when the files do not say (a DICOM code: ``"CT"``, ``"MR"``,
            ``"US"``, ``"CR"``, ...; it overrides the files' own). Recorded in the model, it
            lets ``translate`` and ``enhance`` refuse inputs of another modality; without it
            they warn that inputs go unchecked. For ``paired``/``unpaired``: the source's.
        target_modality: for ``paired``/``unpaired``: the target's modality when its files do
            not say; default: ``modality`` (give it for a cross-modality model, e.g. CT -> MR).
        volumes: for ``paired``/``unpaired`` volumes: ``"slices"`` (2D slices along ``axis``)
            or ``"whole"`` (whole volumes, for a 3D model).
        mask_path: for ``image_mask``: the label maps (a folder or file, integer labels
            0..K-1 or 0/255 binary masks), one per image, same grid.
        patch_size: for ``image_mask``: train on random patches of this side (a fresh crop
            per item, at the stored resolution) instead of whole images.
        balance_classes: draw training images so that every class is seen equally often
            (weights 1 / class size, with replacement), for a class-conditional GAN on
            imbalanced data; the model package keeps the real class counts.
        source_prior: for ``paired`` data (pix2pix): ``"matched"``, ``"inverted"`` or
            ``"auto"`` gives the generator each source histogram-matched to the training
            target (inverted first, or whichever of the two fits the training pairs better) as
            an extra channel, and it learns a correction of that prior
            (:mod:`medisynth.data.histogram`); ``"none"`` (default): the source alone.
        normalisation: for ``paired``/``unpaired``: ``"brain"`` puts every scan on its own
            in-brain scale before training (1st..99th percentile inside the brain -> 0..1, 0
            outside: :func:`medisynth.data.intensity.normalise_in_brain`), so raw integer MR and
            scans z-scored elsewhere mix; ``translate`` then normalises each input the same way
            and writes the output on that 0..1 scale. ``"none"`` (default): one intensity map
            fitted on all the data.
        brain_mask_path: with ``normalisation: brain``: brain masks of the ``path`` scans (a
            file, or a folder pairing by sorted name); paired targets share them. Default:
            the voxels above 0 (skull-stripped scans).
        target_brain_mask_path: the same for the ``target_path`` scans of unpaired data.
    """

    format: DataFormat = "medmnist"
    path: str | None = None
    target_path: str | None = None
    split: str = "train"
    image_size: int | None = Field(default=None, ge=8, le=1024)
    class_names: list[str] | None = None
    labels: str = "subfolders"
    axis: int = Field(default=2, ge=0, le=2)
    min_foreground: float = Field(default=0.1, ge=0.0, le=1.0)
    modality: str | None = None
    target_modality: str | None = None
    volumes: Literal["slices", "whole"] = "slices"
    mask_path: str | None = None
    patch_size: int | None = Field(default=None, ge=8, le=1024)
    balance_classes: bool = False
    source_prior: Literal["none", "matched", "inverted", "auto"] = "none"
    normalisation: Literal["none", "brain"] = "none"
    brain_mask_path: str | None = None
    target_brain_mask_path: str | None = None

    @field_validator("source_prior")
    @classmethod
    def _prior_needs_pairs(cls, value: str, info: ValidationInfo) -> str:
        if value != "none" and info.data.get("format") != "paired":
            raise ValueError("a source prior needs paired data (data.format: paired)")
        return value

    @field_validator("normalisation")
    @classmethod
    def _normalisation_needs_pairs(cls, value: str, info: ValidationInfo) -> str:
        if value != "none" and info.data.get("format") not in ("paired", "unpaired"):
            raise ValueError("data.normalisation: brain needs paired or unpaired data")
        return value

    @field_validator("brain_mask_path", "target_brain_mask_path")
    @classmethod
    def _masks_need_normalisation(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and info.data.get("normalisation") != "brain":
            raise ValueError("brain masks need data.normalisation: brain")
        return value

    @field_validator("target_modality")
    @classmethod
    def _target_needs_pairs(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and info.data.get("format") not in ("paired", "unpaired"):
            raise ValueError("a target modality needs paired or unpaired data")
        return value

    def resolved_path(self) -> Path:
        """``path`` with ``~`` and ``$VARS`` expanded; a ConfigError when it is missing."""
        if not self.path:
            raise ConfigError(f"data.path is required for data.format={self.format!r}")
        return expand_path(self.path)

    def resolved_target_path(self) -> Path:
        """``target_path`` expanded; a ConfigError when it is missing."""
        if not self.target_path:
            raise ConfigError(f"data.target_path is required for data.format={self.format!r}")
        return expand_path(self.target_path)


class TrainConfig(StrictModel):
    """How the engine trains: length, batch, device, precision, checkpoints, monitoring.

    Attributes:
        steps: number of optimisation steps (one step = one batch for D and G).
        batch_size: images per step and per process (DDP multiplies it by the process count).
        max_minutes: stop cleanly (checkpoint + model package) after this much wall time.
        device: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
        precision: ``"auto"`` (bf16 autocast on a CPU with native bf16, fp16 AMP on CUDA, else
            fp32), or one of ``"fp32"``, ``"bf16"``, ``"fp16"``. On a CPU, ``auto`` trains 3D
            models in fp32: bf16 3D convolutions there gave sporadic NaN (torch 2.13).
        channels_last: memory format of the networks; ``None`` = on whenever mixed precision is
            (never for 3D models on a CPU).
        ema_decay: decay of the exponential moving average of the generator (0 disables).
        checkpoint_every: write ``checkpoints/last.pt`` every this many steps (0: only at the end).
        sample_every: write a sample grid PNG every this many steps (0: only at the end).
        log_every: append a line to ``metrics.jsonl`` every this many steps.
        divergence_threshold: a loss whose magnitude exceeds this counts as diverged.
        num_workers: DataLoader worker processes.
        threads: CPU threads per process; default: torch's choice, or the cores shared among
            the processes of this machine under torchrun (so they do not oversubscribe them).
            Set 1 on a machine busy with other jobs; training warns when its threads outnumber
            the cores the load average leaves free.
        out_dir: the run folder (checkpoints, samples, metrics, the model package).
        record_paths: write the data paths and ``out_dir`` into the run folder's own
            ``config.yaml``. Off by default: paths often name patients (a DICOM export folder
            named after the patient), so they are written as ``<not recorded>``; checkpoints
            and model packages never hold them, whatever this says.
        progress: show a progress bar.
        tensorboard: also log to TensorBoard when the ``tensorboard`` package is installed.
    """

    steps: int = Field(default=10_000, ge=1)
    batch_size: int = Field(default=64, ge=1)
    max_minutes: float | None = Field(default=None, gt=0)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    channels_last: bool | None = None
    ema_decay: float = Field(default=0.999, ge=0.0, lt=1.0)
    checkpoint_every: int = Field(default=1000, ge=0)
    sample_every: int = Field(default=500, ge=0)
    log_every: int = Field(default=50, ge=1)
    divergence_threshold: float = Field(default=1e5, gt=0)
    num_workers: int = Field(default=0, ge=0)
    threads: int | None = Field(default=None, ge=1)
    out_dir: str = "runs/medisynth"
    record_paths: bool = False
    progress: bool = True
    tensorboard: bool = True


#: What a model card says about use when the run's config says nothing more specific.
DEFAULT_INTENDED_USE = (
    "Research: synthetic images to augment or share training data and to study generative "
    "models. Synthetic images must stay labelled as synthetic."
)
DEFAULT_OUT_OF_SCOPE = (
    "Diagnosis, treatment decisions or any clinical use; passing synthetic images off as real "
    "patient data; populations, scanners or modalities unlike the training data."
)
DEFAULT_LIMITATIONS = [
    "Trained on one dataset: samples reflect its population, scanners and preprocessing.",
    "GANs can miss rare findings (mode dropping) and can reproduce training images; check "
    "diversity and memorisation with `medisynth validate` before sharing samples.",
    "Fine anatomical detail is not guaranteed to be plausible; do not measure anatomy on "
    "synthetic images.",
]


class CardConfig(StrictModel):
    """What the model card states beyond what the run records by itself.

    Attributes:
        license: the licence of the weights (the training data's own terms also apply).
        data_description: the training data in words (population, scanner, preprocessing).
        intended_use: what the model is for.
        out_of_scope: what it must not be used for.
        limitations: known limitations, one per item.
    """

    license: str = "unspecified (set card.license; the training data's terms apply)"
    data_description: str = ""
    intended_use: str = DEFAULT_INTENDED_USE
    out_of_scope: str = DEFAULT_OUT_OF_SCOPE
    limitations: list[str] = Field(default_factory=lambda: list(DEFAULT_LIMITATIONS))


# ----------------------------------------------------------------------------- YAML
class ConfigLoader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 booleans: only ``true`` / ``false``.

    YAML 1.1 reads ``off``, ``on``, ``yes`` and ``no`` as booleans, so ``ada: off`` would reach
    a choice of strings as ``False``. Here they stay strings; a boolean setting still accepts
    them (pydantic reads ``"off"`` as ``False``).

    >>> load_yaml("ada: off")
    {'ada': 'off'}
    >>> load_yaml("conditional: true")
    {'conditional': True}
    """


ConfigLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def load_yaml(text: str) -> Any:
    """Parse YAML text with :class:`ConfigLoader` (raises ``yaml.YAMLError``)."""
    return yaml.load(text, Loader=ConfigLoader)  # noqa: S506 - a SafeLoader subclass


# ----------------------------------------------------------------------------- overrides
def apply_override(data: dict[str, Any], item: str) -> None:
    """Set ``a.b.c=value`` in a nested mapping; the value is parsed as YAML (``1e-4``, ``[0, 1]``).

    >>> d = {"train": {"steps": 3}}
    >>> apply_override(d, "train.steps=7"); d
    {'train': {'steps': 7}}
    """
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"override {item!r} must look like key=value, e.g. train.steps=500")
    try:
        value = load_yaml(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    parts = key.split(".")
    node = data
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            where = ".".join(parts[: depth + 1])
            raise ConfigError(f"override {item!r}: {where!r} is a value, not a section")
        node = child
    node[parts[-1]] = value


# ----------------------------------------------------------------------------- strict keys
#: family name -> the family's settings class (what :mod:`medisynth.config` asks the registry)
FamilyConfigLookup = Callable[[str], type[FamilyConfig]]


def check_keys(
    model: type[BaseModel],
    data: Any,
    prefix: str = "",
    family_config: FamilyConfigLookup | None = None,
) -> None:
    """Raise ConfigError for the first key of ``data`` that ``model`` does not know.

    A :class:`FamilyConfig` section is checked against the settings class that
    ``family_config`` gives for its ``family`` (default ``dcgan``); without ``family_config``,
    against ``model`` itself.

    >>> check_keys(DataConfig, {"format": "slices", "axis": 1})  # known keys: no error
    """
    if not isinstance(data, dict):
        return
    if family_config is not None and isinstance(model, type) and issubclass(model, FamilyConfig):
        model = family_config(str(data.get("family", "dcgan")))
    fields = model.model_fields
    for key, value in data.items():
        if key not in fields:
            known = sorted(fields)
            where = f"{prefix}{key}"
            close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}? " if close else ""
            section = f"in {prefix[:-1]!r}" if prefix else "at the top level"
            raise ConfigError(
                f"unknown key {where!r}; {hint}(known keys {section}: {', '.join(known)})"
            )
        sub = _model_type(fields[key].annotation)
        if sub is not None:
            check_keys(sub, value, f"{prefix}{key}.", family_config)


def _model_type(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_type(arg)
        if found is not None:
            return found
    origin = getattr(annotation, "__origin__", None)
    if isinstance(origin, type) and issubclass(origin, BaseModel):
        return origin
    # SerializeAsAny[X] is Annotated[X, ...]: its first metadata arg is X
    inner = getattr(annotation, "__metadata__", None)
    if inner is not None:
        return _model_type(getattr(annotation, "__origin__", None))
    return None


# ----------------------------------------------------------------------------- one-line errors
def format_validation_error(err: ValidationError, source: str) -> str:
    """Every problem pydantic found, on one line (the CLI prints errors as one line).

    >>> try:
    ...     TrainConfig(steps=0)
    ... except ValidationError as err:
    ...     print(format_validation_error(err, "run.yaml"))
    run.yaml: invalid config: steps: Input should be greater than or equal to 1 (got 0)
    """
    problems = []
    for item in err.errors():
        where = ".".join(str(p) for p in item["loc"] if not str(p).startswith("function-"))
        got = item.get("input")
        shown = "" if isinstance(got, dict) else f" (got {got!r})"
        problems.append(f"{where}: {item['msg']}{shown}")
    head = f"{source}: invalid config" if source else "invalid config"
    return f"{head}: {'; '.join(problems)}"


def yaml_problem(err: yaml.YAMLError) -> str:
    """A YAML syntax error on one line: what and where (PyYAML's own text spans several lines).

    >>> try:
    ...     yaml.safe_load("train: {steps: [\\n")
    ... except yaml.YAMLError as err:
    ...     print(yaml_problem(err))
    line 2, column 1: expected the node content, but found '<stream end>'
    """
    if isinstance(err, yaml.MarkedYAMLError):
        mark = err.problem_mark or err.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        return where + (err.problem or err.context or "syntax error")
    return " ".join(str(err).split())

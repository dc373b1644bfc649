"""Typed run configurations: pydantic models with strict keys, YAML in and out, dotted overrides.

A run is described by :class:`RunConfig`: ``seed`` (the one seed that drives everything),
``data`` (where images come from), ``model`` (the GAN family and its settings; the family's own
pydantic model, found through :mod:`medisynth.gans`) and ``train`` (steps, precision,
checkpoints, logging). Unknown keys are errors with a did-you-mean hint.

The section models (:class:`DataConfig`, :class:`TrainConfig`, :class:`CardConfig`,
:class:`FamilyConfig`) and the generic helpers live in the leaf :mod:`medisynth.settings` and are
re-exported here; this module adds what needs the family registry.

>>> cfg = RunConfig.from_dict({"data": {"path": "x.npz"}, "train": {"steps": 10}},
...                           overrides=["model.loss=lsgan", "seed=3"])
>>> cfg.train.steps, cfg.model.family, cfg.model.loss, cfg.seed
(10, 'dcgan', 'lsgan', 3)
>>> try:
...     RunConfig.from_dict({"train": {"stepz": 10}})
... except ConfigError as err:
...     print(err)  # doctest: +ELLIPSIS
unknown key 'train.stepz'; did you mean 'steps'? (known keys in 'train': batch_size, ...)
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    BaseModel,
    Field,
    SerializeAsAny,
    ValidationError,
    field_validator,
    model_validator,
)

from medisynth.errors import ConfigError
from medisynth.files import atomic_write_text
from medisynth.gans import get_family
from medisynth.settings import (
    DEFAULT_INTENDED_USE,
    DEFAULT_LIMITATIONS,
    DEFAULT_OUT_OF_SCOPE,
    CardConfig,
    DataConfig,
    FamilyConfig,
    StrictModel,
    TrainConfig,
    apply_override,
    format_validation_error,
    load_yaml,
    yaml_problem,
)
from medisynth.settings import check_keys as check_section_keys

__all__ = [
    "DEFAULT_INTENDED_USE",
    "DEFAULT_LIMITATIONS",
    "DEFAULT_OUT_OF_SCOPE",
    "NOT_RECORDED",
    "CardConfig",
    "DataConfig",
    "FamilyConfig",
    "RunConfig",
    "StrictModel",
    "TrainConfig",
    "apply_override",
    "check_keys",
    "family_config_class",
    "load_config",
    "save_config",
]

#: what a path setting says where the path was left out (checkpoints, packages, run configs)
NOT_RECORDED = "<not recorded>"

#: the data settings that name a file or folder
PATH_KEYS = ("path", "target_path", "mask_path", "brain_mask_path", "target_brain_mask_path")


class RunConfig(StrictModel):
    """One training run. Build it with :meth:`from_dict` or :func:`load_config`."""

    seed: int = Field(default=0, ge=0, lt=2**32)
    data: DataConfig = Field(default_factory=DataConfig)
    model: SerializeAsAny[FamilyConfig] = Field(default_factory=FamilyConfig, validate_default=True)
    train: TrainConfig = Field(default_factory=TrainConfig)
    card: CardConfig = Field(default_factory=CardConfig)

    @field_validator("model", mode="before")
    @classmethod
    def _family_settings(cls, value: Any) -> Any:
        if isinstance(value, FamilyConfig) and type(value) is not FamilyConfig:
            return value
        if isinstance(value, FamilyConfig):
            value = value.model_dump()
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise ValueError("model must be a mapping with a 'family' key")
        family = family_config_class(str(value.get("family", "dcgan")))
        return family.model_validate({"family": "dcgan", **value})

    @model_validator(mode="after")
    def _family_trains_on_the_data(self) -> RunConfig:
        """The family declares the data formats it trains on: refuse others before any data
        is read (a ConfigError naming the formats the family takes)."""
        get_family(self.model.family).check_data_format(self.data.format)
        return self

    @classmethod
    def from_dict(
        cls,
        data: dict[str, Any] | None = None,
        overrides: list[str] | None = None,
        source: str = "",
    ) -> RunConfig:
        """Validate a plain mapping (e.g. parsed YAML) after applying ``key=value`` overrides."""
        data = copy.deepcopy(data) if data else {}
        if not isinstance(data, dict):
            raise ConfigError(f"{source or 'config'}: the top level must be a mapping of keys")
        for item in overrides or []:
            apply_override(data, item)
        check_keys(cls, data)
        try:
            return cls.model_validate(data)
        except ValidationError as err:
            raise ConfigError(format_validation_error(err, source)) from None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML-friendly mapping of every setting (defaults included)."""
        return self.model_dump(mode="json")

    def without_paths(self) -> RunConfig:
        """A copy that names no file or folder: every path setting that is set (``data.path``,
        ``data.target_path``, ``data.mask_path``, the brain masks, a label CSV in ``data.labels``,
        ``train.out_dir``) becomes :data:`NOT_RECORDED`. What the data were is kept by the data
        fingerprint and file count of the model card.

        >>> cfg = RunConfig.from_dict({"data": {"path": "/scans/DOE_JOHN/t1.nii.gz"}})
        >>> cfg.without_paths().data.path, cfg.without_paths().train.out_dir
        ('<not recorded>', '<not recorded>')
        """
        data = self.data.model_dump()
        for key in PATH_KEYS:
            if data[key] is not None:
                data[key] = NOT_RECORDED
        if data["labels"] not in ("subfolders", "none"):
            data["labels"] = NOT_RECORDED
        return self.model_copy(
            update={
                "data": DataConfig.model_validate(data),
                "train": self.train.model_copy(update={"out_dir": NOT_RECORDED}),
            }
        )

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


# ----------------------------------------------------------------------------- YAML in/out
def load_config(path: str | os.PathLike[str], overrides: list[str] | None = None) -> RunConfig:
    """Read a YAML run config, apply ``key=value`` overrides, validate strictly.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "run.yaml"
    >>> _ = p.write_text("train:\\n  steps: 5\\n")
    >>> load_config(p, ["train.batch_size=8"]).train.batch_size
    8
    """
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: no such config file")
    if not path.is_file():  # a folder, or a pipe that would block the read
        raise ConfigError(f"{path}: not a file; give a YAML run config (see examples/*.yaml)")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read the config ({err})") from None
    try:
        data = load_yaml(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({yaml_problem(err)})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: the top level must be a mapping of keys, got {type(data).__name__}"
        )
    return RunConfig.from_dict(data, overrides, source=str(path))


def save_config(config: RunConfig, path: str | os.PathLike[str]) -> None:
    """Write ``config`` as YAML, atomically."""
    atomic_write_text(path, config.to_yaml())


# ----------------------------------------------------------------------------- the registry
def family_config_class(name: str) -> type[FamilyConfig]:
    """The settings class of the GAN family ``name`` (a ConfigError names the known ones).

    >>> family_config_class("pix2pix").__name__
    'Pix2PixConfig'
    """
    return get_family(name).config_class


def check_keys(model: type[BaseModel], data: Any, prefix: str = "") -> None:
    """Raise ConfigError for the first key of ``data`` that ``model`` does not know; a ``model``
    section is checked against the settings of the family it names."""
    check_section_keys(model, data, prefix, family_config=family_config_class)

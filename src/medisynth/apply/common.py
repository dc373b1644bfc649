"""What every apply module does with a model package: load it, check that its family declares the
task asked for, and describe how a generated set was made."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from typing import Any

from medisynth.errors import ConfigError
from medisynth.gans import families_for
from medisynth.gans.base import APPLY_COMMANDS, TASK_NOUNS, TASK_WORDS, GANFamily, Task
from medisynth.output_set import model_name
from medisynth.package import ModelPackage, load_package, software_versions

#: what the apply functions take as a model: a package folder or a loaded package
Model = str | os.PathLike[str] | ModelPackage


def open_package(model: Model) -> ModelPackage:
    """``model`` loaded (a :class:`ModelPackage` is returned as it is)."""
    return model if isinstance(model, ModelPackage) else load_package(model)


def require_task(package: ModelPackage, task: Task, command: str) -> GANFamily:
    """The package's family, checked to declare ``task``; a ConfigError saying what the model is,
    what ``command`` needs (and which families make one) and how to apply this model otherwise.
    """
    family = package.family
    if family.task != task:
        raise ConfigError(
            f"{package.path} is a {package.config.model.family} model; {command} needs "
            f"{TASK_NOUNS[task]} ({', '.join(families_for(task=task))}). This one "
            f"{TASK_WORDS[family.task]}: use `{APPLY_COMMANDS[family.task]}`"
        )
    return family


def generation_record(package: ModelPackage, seed: int, **fields: Any) -> dict[str, Any]:
    """What a ``generation.json`` says besides its files: the model's id (never its folder) and
    data fingerprint, the seed, ``fields``, the intensity map undone, ``synthetic``, when and with
    which software versions."""
    return {
        "model_id": model_name(package.card),
        "model_fingerprint": package.card.get("data", {}).get("fingerprint", ""),
        "seed": seed,
        **fields,
        "intensity_map": package.data.intensity_map.to_dict(),
        "synthetic": True,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": software_versions(),
    }

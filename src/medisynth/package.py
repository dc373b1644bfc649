"""Model packages: everything needed to generate images, and to know how the model was made.

A package is a folder::

    weights.safetensors   the inference networks (EMA generator), no pickle
    config.yaml           the full run config (seed, data, model, training settings)
    intensity_map.json    the [-1, 1] <-> source-units map, applied in reverse when generating
    model_card.json       data fingerprint, classes and their balance, training, versions, seed
    model_card.md         the same for people

>>> import tempfile, pathlib, torch
>>> from medisynth.config import RunConfig
>>> from medisynth.gans import get_family
>>> from medisynth.gans.base import DataInfo
>>> cfg = RunConfig.from_dict({"model": {"g_channels": 8, "latent_dim": 8}})
>>> data = DataInfo(channels=1, spatial_shape=(28, 28), class_names=["a", "b"])
>>> gan = get_family("dcgan").build(cfg.model, data, training=False)
>>> folder = save_package(pathlib.Path(tempfile.mkdtemp()) / "model", gan, cfg)
>>> load_package(folder).sample(2, labels=[0, 1]).shape
torch.Size([2, 1, 28, 28])
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from medisynth.config import RunConfig
from medisynth.data.intensity import IntensityMap, intensity_map_from_dict
from medisynth.errors import ConfigError, MedisynthError, ReadError
from medisynth.files import atomic_folder, atomic_path, atomic_write_text
from medisynth.gans import get_family
from medisynth.gans.base import DataInfo, GANFamily, StepContext
from medisynth.package_format import format_name, format_version, migrate
from medisynth.settings import load_yaml

log = logging.getLogger(__name__)

PACKAGE_FORMAT = format_name()
WEIGHTS = "weights.safetensors"
CONFIG = "config.yaml"
INTENSITY = "intensity_map.json"
CARD_JSON = "model_card.json"
CARD_MD = "model_card.md"


class ModelOutputError(MedisynthError):
    """A model produced NaN or infinite values; nothing made from them is written."""


def software_versions() -> dict[str, str]:
    """Versions of the software that matters for reproducing a result."""
    import medisynth

    return {
        "medisynth": medisynth.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }


def save_package(
    folder: str | os.PathLike[str],
    family: GANFamily,
    config: RunConfig,
    training: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
) -> Path:
    """Write ``family``'s inference networks and their description as a package ``folder``.

    The folder is assembled beside the target and renamed into place, so a reader never sees a
    half-written package. An existing folder is replaced only if it is itself a package. The
    package records no user path (the config's paths are replaced by ``<not recorded>``, see
    :meth:`~medisynth.config.RunConfig.without_paths`); files and folders get the usual
    permissions (the umask applies).
    """
    folder = Path(folder)
    if folder.exists() and not (folder / CARD_JSON).is_file():
        raise ConfigError(
            f"{folder} exists and is not a medisynth model package; refusing to overwrite it"
        )
    config = config.without_paths()  # user paths can name patients: not in a package
    data = family.data
    tensors = {}
    for net_name, net in family.inference_nets().items():
        for key, value in net.state_dict().items():
            tensors[f"{net_name}.{key}"] = value.detach().cpu().contiguous()
    card = _card(family, config, training or {}, metrics or {}, model_id(tensors, config))
    with atomic_folder(folder) as staging:
        with atomic_path(staging / WEIGHTS) as weights:
            save_file(
                tensors,
                str(weights),
                metadata={"format": PACKAGE_FORMAT, "family": config.model.family},
            )
        atomic_write_text(staging / CONFIG, config.to_yaml())
        atomic_write_text(
            staging / INTENSITY, json.dumps(data.intensity_map.to_dict(), indent=2) + "\n"
        )
        atomic_write_text(staging / CARD_JSON, json.dumps(card, indent=2) + "\n")
        atomic_write_text(staging / CARD_MD, model_card_markdown(card))
    log.info("model package written to %s", folder)
    return folder


def model_id(tensors: dict[str, torch.Tensor], config: RunConfig) -> str:
    """``<family>-<first 12 hex of the weights' sha256>``: names a model by what it computes."""
    digest = hashlib.sha256()
    for key in sorted(tensors):
        digest.update(key.encode())
        digest.update(tensors[key].numpy().tobytes())
    return f"{config.model.family}-{digest.hexdigest()[:12]}"


def verify_weights(
    folder: Path, tensors: dict[str, torch.Tensor], config: RunConfig, card: dict[str, Any]
) -> None:
    """ReadError unless ``tensors`` hash to the card's ``model_id`` (weights changed or damaged
    since the package was written: a flipped byte would otherwise give garbage images)."""
    recorded = card.get("model_id")
    actual = model_id(tensors, config)
    if recorded != actual:
        raise ReadError(
            folder,
            f"the weights do not match the model card: {WEIGHTS} hashes to model id {actual!r}, "
            f"the card records {recorded!r}, so the weights were changed or damaged after the "
            "package was written",
            "copy the package again from where it was trained, or retrain",
        )


def _architecture(family: GANFamily) -> dict[str, Any]:
    nets = {
        name: {
            "class": type(net).__name__,
            "parameters": int(sum(p.numel() for p in net.parameters())),
        }
        for name, net in family.inference_nets().items()
    }
    return {"family": type(family).__name__, "inference_networks": nets}


def _card(
    family: GANFamily,
    config: RunConfig,
    training: dict[str, Any],
    metrics: dict[str, Any],
    identifier: str,
) -> dict[str, Any]:
    data = family.data
    total = sum(data.class_counts.values())
    balance = {
        data.class_names[k]: round(v / total, 6) for k, v in sorted(data.class_counts.items())
    }
    card = config.card
    return {
        "format": PACKAGE_FORMAT,
        "model_id": identifier,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "family": config.model.family,
        "architecture": _architecture(family),
        "seed": config.seed,
        "data": {
            **data.to_dict(),
            "class_balance": balance,
            "description": card.data_description,
        },
        "model": config.model.model_dump(mode="json"),
        "training": {**config.train.model_dump(mode="json"), **training},
        "metrics": metrics,
        "versions": software_versions(),
        "intended_use": card.intended_use,
        "out_of_scope": card.out_of_scope,
        "limitations": list(card.limitations),
        "license": card.license,
    }


def _scalars(value: Any, depth: int = 2) -> Any:
    """The numbers and short strings of a nested report entry (lists of samples dropped)."""
    if isinstance(value, dict):
        if depth == 0:
            return None
        kept = {k: _scalars(v, depth - 1) for k, v in value.items()}
        return {k: v for k, v in kept.items() if v is not None and v != {}}
    if isinstance(value, bool | int | float) or (isinstance(value, str) and len(value) < 200):
        return value
    return None


def read_card(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """A package's model card (``model_card.json``), checked to hold what a card holds.

    Raises:
        ReadError: the folder has no card, or the card is not JSON, not an object, or lacks an
            entry the package or its Markdown card needs (e.g. ``data``).
    """
    path = Path(folder) / CARD_JSON
    if not path.is_file():
        raise ReadError(
            folder,
            "not a medisynth model package (no model_card.json)",
            "a trained run writes its package to <train.out_dir>/model",
        )
    hint = "restore the package from its training run (<train.out_dir>/model), or retrain"
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ReadError(path, f"damaged model card ({err})", hint) from err
    if not isinstance(card, dict):
        raise ReadError(path, "damaged model card (not a JSON object)", hint)
    format_version(card, str(folder))
    if not isinstance(card.get("data"), dict):
        raise ReadError(path, "damaged model card (no 'data' object)", hint)
    try:
        model_card_markdown(card)  # every entry the card is read for is there
    except KeyError as err:
        raise ReadError(path, f"damaged model card (no {err} entry)", hint) from err
    except (TypeError, ValueError, AttributeError, IndexError) as err:
        raise ReadError(path, f"damaged model card ({type(err).__name__}: {err})", hint) from err
    return card


def _card_data(folder: Path, card: dict[str, Any]) -> DataInfo:
    """The card's description of the training data, as the family builds on it."""
    fields = {k: v for k, v in card["data"].items() if k not in ("class_balance", "description")}
    try:
        return DataInfo.from_dict(fields)
    except (ConfigError, KeyError, TypeError, ValueError, AttributeError) as err:
        raise ReadError(
            folder / CARD_JSON,
            f"damaged model card: its data entry does not load ({type(err).__name__}: {err})",
            "restore the package from its training run (<train.out_dir>/model), or retrain",
        ) from err


def attach_metrics(folder: str | os.PathLike[str], report: dict[str, Any]) -> dict[str, Any]:
    """Put a ``medisynth validate`` report's summary into a package's model card (rewritten
    atomically, JSON and Markdown). Returns the updated card.

    Raises:
        ReadError: the package's card is missing or damaged.
        ConfigError: ``report`` is not a validation report (a JSON object with ``metrics``).
    """
    if not isinstance(report, dict) or not isinstance(report.get("metrics"), dict):
        raise ConfigError(
            "not a `medisynth validate` report (a JSON object with a 'metrics' object); give "
            "the report.json that `medisynth validate` wrote"
        )
    folder = Path(folder)
    card = read_card(folder)
    card["metrics"] = {
        "validated": report.get("created", ""),
        "inputs": _card_inputs(report.get("inputs")),
        "verdicts": report.get("verdicts", []),
        "values": {name: _scalars(value) for name, value in report.get("metrics", {}).items()},
    }
    study = _reader_study(report.get("reader_study"))
    if study:
        card["metrics"]["reader_study"] = study
    atomic_write_text(folder / CARD_JSON, json.dumps(card, indent=2) + "\n")
    atomic_write_text(folder / CARD_MD, model_card_markdown(card))
    return card


#: what a card records of each set a report names: sizes and fingerprints, never the set's
#: path or description (the report's ``spec``) nor the package's location
_INPUT_KEYS = ("n", "shape", "source_dtype", "labels", "masks", "fingerprint", "model_id",
               "family", "generated", "seed", "class_counts", "model_size",
               "resized_to")  # fmt: skip


def _card_inputs(inputs: Any) -> dict[str, Any]:
    """The non-identifying part of a report's ``inputs`` (see :data:`_INPUT_KEYS`)."""
    if not isinstance(inputs, dict):
        return {}
    return {
        name: {key: entry[key] for key in _INPUT_KEYS if key in entry}
        for name, entry in inputs.items()
        if isinstance(entry, dict)
    }


#: what a card records of a report's reader study: counts and pooled statistics, never a
#: reader's name (the report's per-reader entries stay out)
_STUDY_NUMBERS = ("n_readers", "n_images", "n_real", "n_synthetic", "n_answers", "accuracy",
                  "accuracy_ci", "p_value", "sensitivity", "specificity", "auc", "kappa",
                  "level")  # fmt: skip
_STUDY_MATCHES = ("same set", "same model", "another set", "unknown")


def _reader_study(section: Any) -> dict[str, Any]:
    """The numbers of a report's ``reader_study`` section that a card records (empty when the
    report has none): counts, pooled statistics and whether the study showed the validated
    sets."""
    if not isinstance(section, dict):
        return {}

    def number(value: Any) -> bool:
        return value is None or (isinstance(value, int | float) and not isinstance(value, bool))

    kept = {
        key: value
        for key, value in ((k, section.get(k)) for k in _STUDY_NUMBERS)
        if number(value)
        or (isinstance(value, list) and len(value) == 2 and all(map(number, value)))
    }
    match = section.get("match")
    if isinstance(match, dict):
        kept["match"] = {
            role: value
            for role, value in match.items()
            if role in ("real", "synthetic") and value in _STUDY_MATCHES
        }
    return kept


def model_card_markdown(card: dict[str, Any]) -> str:
    """A short human-readable model card from the JSON card."""
    data, training = card["data"], card["training"]
    classes = ", ".join(
        f"{name} ({data['class_counts'].get(str(k), 0)} images)"
        for k, name in enumerate(data["class_names"])
    )
    architecture = card.get("architecture", {})
    networks = ", ".join(
        f"{name}: {net['class']} ({net['parameters']:,} parameters)"
        for name, net in architecture.get("inference_networks", {}).items()
    )
    lines = [
        f"# Model card: {card.get('model_id', card['family'])}",
        "",
        f"- Model id: `{card.get('model_id', 'n/a')}`",
        f"- Architecture: {architecture.get('family', card['family'])}; {networks}",
        f"- License: {card.get('license', 'unspecified')}",
        f"- Created: {card['created']}",
        f"- Seed: {card['seed']}",
        f"- Data: {data['source'] or 'in-memory dataset'}"
        + (f" -- {data['description']}" if data.get("description") else ""),
        f"- Data fingerprint (sha256): `{data['fingerprint'] or 'n/a'}`",
        f"- Images: {data['channels']} channel(s), {' x '.join(map(str, data['spatial_shape']))}"
        f", stored as {data['source_dtype']}{', ' + data['modality'] if data['modality'] else ''}",
        f"- Classes: {classes}",
        f"- Intensity map: {data['intensity_map'].get('description') or data['intensity_map']}",
        *(
            [
                "- Source prior: the "
                + ("inverted " if data["source_prior"]["inverted"] else "")
                + "source histogram-matched to the training target; the generator corrects it"
            ]
            if data.get("source_prior")
            else []
        ),
        f"- Training: {training.get('steps', '?')} steps, batch {training['batch_size']}, "
        f"{training.get('precision', '?')} on {training.get('device', '?')}, "
        f"{training.get('wall_seconds', '?')} s, status {training.get('status', '?')}",
        f"- Settings: {json.dumps(card['model'])}",
        f"- Versions: {', '.join(f'{k} {v}' for k, v in card['versions'].items())}",
        "",
        "## Intended use",
        "",
        card["intended_use"],
        "",
        "## Out of scope",
        "",
        card.get("out_of_scope", ""),
        "",
        "## Known limitations",
        "",
        *[f"- {item}" for item in card.get("limitations", [])],
        "",
    ]
    if card.get("metrics"):
        lines += ["## Metrics", "", *_study_lines(card["metrics"].get("reader_study"))]
        lines += ["```json", json.dumps(card["metrics"], indent=2), "```", ""]
    return "\n".join(lines)


def _study_lines(study: Any) -> list[str]:
    """The Markdown card's sentence about a reader study (none without one)."""
    if not isinstance(study, dict) or "n_answers" not in study:
        return []
    if not study["n_answers"] or study.get("accuracy") is None:
        return [f"Reader study: no answers yet ({study.get('n_images')} images).", ""]
    low, high = study.get("accuracy_ci") or (None, None)
    kappa = study.get("kappa")
    return [
        f"Reader study: accuracy {study['accuracy']:.3f} (95% CI {low:.3f}-{high:.3f}, "
        f"p = {study.get('p_value', 0):.3g}) telling synthetic from real, {study['n_answers']} "
        f"answers by {study.get('n_readers')} reader(s) on {study.get('n_images')} images; "
        f"Fleiss' kappa {'n/a' if kappa is None else f'{kappa:.3f}'}.",
        "",
    ]


@dataclass
class ModelPackage:
    """A loaded model package; :meth:`sample` draws images, :meth:`to_source_units` maps back."""

    path: Path
    config: RunConfig
    data: DataInfo
    card: dict[str, Any]
    family: GANFamily

    @property
    def class_names(self) -> list[str]:
        return list(self.data.class_names)

    @property
    def intensity_map(self) -> IntensityMap:
        return self.data.intensity_map

    @property
    def conditional(self) -> bool:
        """Whether the model draws images of given classes (its family's declaration)."""
        return self.family.conditional

    def require_finite(self, values: torch.Tensor | np.ndarray, what: str) -> None:
        """ModelOutputError when the network's output ``values`` hold NaN or infinite values
        (damaged weights or a diverged model): they are never written as images."""
        if isinstance(values, torch.Tensor):
            finite = bool(torch.isfinite(values).all())
        else:
            finite = bool(np.isfinite(np.asarray(values)).all())
        if not finite:
            raise ModelOutputError(
                f"{self.path}: the model gave NaN or infinite values ({what}); nothing was "
                "written. The model is broken (diverged in training or damaged): retrain it, "
                "or use an earlier package"
            )

    def sample(
        self, n: int, labels: Sequence[int] | torch.Tensor | None = None, seed: int = 0
    ) -> torch.Tensor:
        """``n`` images in [-1, 1], ``(n, C, *spatial)``; the same seed gives the same images."""
        label_tensor = None if labels is None else torch.as_tensor(labels, dtype=torch.long)
        noise = torch.Generator().manual_seed(seed)
        return self.family.sample(n, label_tensor, generator=noise)

    def to_source_units(self, images: torch.Tensor | np.ndarray) -> np.ndarray:
        """Apply the inverse intensity map: [-1, 1] -> the training data's units (float32).

        Raises:
            ModelOutputError: the images hold NaN or infinite values.
        """
        array = images.numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
        self.require_finite(array, "generated images")
        array = np.clip(array.astype(np.float32), -1.0, 1.0)
        return np.asarray(self.intensity_map.inverse(array), dtype=np.float32)


def load_package(folder: str | os.PathLike[str], device: str = "cpu") -> ModelPackage:
    """Read a package written by :func:`save_package` (or by training) for generation."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ReadError(folder, "no such model folder", "give the run's model/ folder")
    missing = [n for n in (WEIGHTS, CONFIG, INTENSITY, CARD_JSON) if not (folder / n).is_file()]
    if missing:
        raise ReadError(
            folder,
            f"not a medisynth model package (missing {', '.join(missing)})",
            "a trained run writes its package to <train.out_dir>/model",
        )
    try:
        card = read_card(folder)
        config_data = load_yaml((folder / CONFIG).read_text(encoding="utf-8"))
        intensity = intensity_map_from_dict(
            json.loads((folder / INTENSITY).read_text(encoding="utf-8"))
        )
    except (json.JSONDecodeError, yaml.YAMLError, UnicodeDecodeError, ConfigError) as err:
        raise ReadError(folder, f"damaged package metadata ({err})") from err
    if not isinstance(config_data, dict):
        raise ReadError(folder / CONFIG, "damaged package config (not a mapping of settings)")
    card, config_data = migrate(card, config_data, str(folder))
    try:
        config = RunConfig.from_dict(config_data, source=str(folder / CONFIG))
    except ConfigError as err:
        written_by = card.get("versions", {}).get("medisynth", "an unknown version")
        raise ReadError(
            folder,
            f"its settings do not validate in medisynth {software_versions()['medisynth']} "
            f"(the package was written by medisynth {written_by}): {err}",
            f"load it with medisynth {written_by}, or retrain",
        ) from err
    data = _card_data(folder, card)
    data.intensity_map = intensity
    family = get_family(config.model.family).build(
        config.model, data, StepContext(torch.device(device)), training=False
    )
    try:
        tensors = load_file(str(folder / WEIGHTS))
    except (SafetensorError, OSError) as err:
        raise ReadError(folder / WEIGHTS, f"unreadable weights ({err})") from err
    verify_weights(folder, tensors, config, card)
    for name, net in family.inference_nets().items():
        prefix = f"{name}."
        state = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        try:
            net.load_state_dict(state)
        except RuntimeError as err:
            raise ReadError(folder / WEIGHTS, f"weights do not fit the {name}: {err}") from err
        net.eval()
    return ModelPackage(path=folder, config=config, data=data, card=card, family=family)

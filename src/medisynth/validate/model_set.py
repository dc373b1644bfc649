"""The synthetic set of ``medisynth validate``: read from its spec, or generated from ``--model``.

A generated set is made in memory: as many images as the training set (else the real set)
holds, in its class balance for a conditional model (:class:`ClassBalance`), at the real
images' size.

>>> ClassBalance.of_labels(np.array([0, 1, 1, 1]), 2, "x.npz:train")
ClassBalance(counts=(1, 3), source='x.npz:train')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from medisynth.data.sets import ImageSet, load_image_set
from medisynth.errors import ConfigError

if TYPE_CHECKING:
    from medisynth.package import ModelPackage


@dataclass(frozen=True)
class ClassBalance:
    """Images per class, in class order, that a generated set follows in proportion, and where
    they were counted (a set's spec, or ``"model card"``)."""

    counts: tuple[int, ...]
    source: str

    @classmethod
    def of_labels(cls, labels: np.ndarray, n_classes: int, source: str) -> ClassBalance:
        """The balance of a set's labels (each in ``0 .. n_classes - 1``)."""
        labels = np.asarray(labels).astype(np.int64)
        return cls(tuple(np.bincount(labels, minlength=n_classes).tolist()), source)


def model_name(package: ModelPackage) -> str:
    """The name the report gives a model: its card's ``model_id``, else its folder's name."""
    return str(package.card.get("model_id", package.path.name))


def _class_balance(
    package: ModelPackage, class_names: list[str], sets: tuple[ImageSet | None, ...]
) -> ClassBalance:
    """The first labelled set's class balance; without one, the model's training balance."""
    k = len(class_names)
    source = next((s for s in sets if s is not None and s.labels is not None), None)
    if source is None:
        counts = tuple(package.data.class_counts.get(c, 1) for c in range(k))
        return ClassBalance(counts, "model card")
    labels = np.asarray(source.labels).astype(np.int64)
    if labels.min() < 0 or labels.max() >= k:
        raise ConfigError(
            f"{source.spec}: labels run from {labels.min()} to {labels.max()} but the "
            f"model {model_name(package)} has {k} classes ({', '.join(class_names)})"
        )
    return ClassBalance.of_labels(labels, k, source.spec)


def _check_model(package: ModelPackage, real: ImageSet) -> None:
    """Refuse image-to-image models and models of another number of channels."""
    name = model_name(package)
    if package.data.source_intensity_map is not None:
        raise ConfigError(
            f"{package.path} is an image-to-image model ({package.card.get('family')}): it "
            "translates images rather than generating them; translate the real inputs with "
            "`medisynth translate` and give the result as --synthetic"
        )
    channels = real.images.shape[1]
    if package.data.channels != channels:
        raise ConfigError(
            f"the model {name} makes {package.data.channels}-channel images but the real "
            f"images have {channels} channel(s)"
        )


def _model_entry(package: ModelPackage, generated: bool) -> dict[str, Any]:
    """The report's ``inputs.model`` entry: which model, and whether it made the set."""
    return {
        "path": str(package.path),
        "model_id": model_name(package),
        "family": package.card.get("family", ""),
        "generated": generated,
    }


def synthetic_from_model(
    package: ModelPackage, real: ImageSet, train: ImageSet | None, seed: int, progress: bool
) -> tuple[ImageSet, dict[str, Any]]:
    """Generate (in memory) as many images as ``train`` (else ``real``) holds, in its class
    balance for a conditional model, at the real images' size; and how they were made."""
    from medisynth.apply.generate import generate_arrays, output_class_names

    _check_model(package, real)
    name, spatial = model_name(package), tuple(real.images.shape[2:])
    reference = train if train is not None else real
    class_names = output_class_names(package)
    balance = _class_balance(package, class_names, (train, real)) if package.conditional else None
    images, labels_out = generate_arrays(
        package, len(reference.images), None if balance is None else balance.counts, seed=seed,
        progress=progress, spatial_shape=spatial,
    )  # fmt: skip
    counts = np.bincount(labels_out, minlength=len(class_names)).tolist()
    made = {
        **_model_entry(package, generated=True),
        "n": len(images),
        "seed": seed,
        "class_counts": dict(zip(class_names, counts, strict=True)),
        "balance_from": None if balance is None else balance.source,
        "model_size": list(package.data.spatial_shape),
        "resized_to": None if tuple(package.data.spatial_shape) == spatial else list(spatial),
    }
    synthetic = ImageSet(
        f"model:{name}",
        images.astype(np.float32),
        labels_out if package.conditional else None,
        package.data.source_dtype,
        f"{name}:seed={seed}:counts={counts}:size={list(spatial)}",
    )
    return synthetic, made


def synthetic_set(
    synthetic: str | None,
    synthetic_masks: str | None,
    package: ModelPackage | None,
    real: ImageSet,
    train: ImageSet | None,
    seed: int,
    progress: bool,
) -> tuple[ImageSet, dict[str, Any] | None]:
    """The synthetic set (read, or generated from ``package``) and the report's model entry."""
    if synthetic is not None:
        made = None if package is None else _model_entry(package, generated=False)
        return load_image_set(synthetic, masks=synthetic_masks), made
    assert package is not None, "validate() checks that a set or a model is given"
    if synthetic_masks is not None:
        raise ConfigError("synthetic masks need a synthetic set (--synthetic)")
    return synthetic_from_model(package, real, train, seed, progress)

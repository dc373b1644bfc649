"""Does picking the "best" synthetic BreastMNIST images help a classifier trained on them?

A trained class-conditional run draws ``--oversample`` x the training set's class counts, and
keeps, per class, as many images as the training set has, by one of these rules:

- ``none``: the first ones drawn (what ``medisynth generate`` does);
- ``discriminator``: the highest score of the run's own discriminator for the image's class;
- ``discriminator-margin``: the highest score for its class minus the score for the other class;
- ``classifier``: the highest probability of the image's class under a classifier (the
  utility protocol's small ResNet, 20 epochs, last epoch) trained on the real training images.

Each selected set is scored by train-on-synthetic, test-on-real AUC (the real test split) with
the utility protocol of ``medisynth validate`` (small ResNet, best epoch on the real val split,
two seeds), and, as a check that does not share that classifier's architecture, with three
scikit-learn classifiers on the pixels (logistic regression, RBF SVM, random forest). The real
training set is scored the same way. Also printed: the median nearest-neighbour distance inside
each selected set (diversity) and to the nearest real training image (copying).
``--latent-std`` below 1 draws narrower latents (the truncation trick).

    python benchmarks/breastmnist_selection.py runs/breastmnist_cgan [--seed 1] [--skip-real]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

from medisynth.data.io import read_medmnist
from medisynth.demo import median_nn_distance
from medisynth.gans import get_family
from medisynth.gans.base import StepContext
from medisynth.metrics.neighbors import knn
from medisynth.metrics.utility import classification_utility, predict_proba, train_classifier
from medisynth.package import ModelPackage, load_package
from medisynth.training.checkpoint import load_checkpoint

RULES = ("none", "discriminator", "discriminator-margin", "classifier")


def default_data() -> Path:
    root = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    return Path(os.environ.get("MEDISYNTH_DATA", root)) / "breastmnist" / "breastmnist.npz"


def sklearn_aucs(
    train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray]
) -> dict[str, float]:
    """Test AUC of three scikit-learn classifiers trained on ``train``'s pixels."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.svm import SVC

    models = {
        "logistic": LogisticRegression(C=0.01, max_iter=3000),
        "svm_rbf": SVC(C=1.0, gamma="scale"),  # AUC from its decision function
        "forest": RandomForestClassifier(500, random_state=0, n_jobs=1),
    }
    (x_train, y_train), (x_test, y_test) = [(x.reshape(len(x), -1), y) for x, y in (train, test)]
    aucs = {}
    for name, model in models.items():
        model.fit(x_train, y_train)
        score = (
            model.decision_function(x_test)
            if name == "svm_rbf"
            else model.predict_proba(x_test)[:, 1]
        )
        aucs[name] = round(float(roc_auc_score(y_test, score)), 4)
    return aucs


def discriminator_scores(
    run: Path, package: ModelPackage, images: torch.Tensor, labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The run's last discriminator on ``images`` with their own labels and the other class's."""
    family = get_family("dcgan").build(
        package.config.model, package.data, StepContext(torch.device("cpu")), training=True
    )
    discriminator = family.nets["discriminator"]
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    discriminator.load_state_dict(state["family"]["nets"]["discriminator"])
    discriminator.eval()
    label_tensor = torch.from_numpy(labels)
    with torch.no_grad():
        own = discriminator(images, label_tensor).numpy()
        other = discriminator(images, 1 - label_tensor).numpy()
    return own, other


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="training run folder (model/, checkpoints/)")
    parser.add_argument("--data", type=Path, default=default_data())
    parser.add_argument("--oversample", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0, help="noise seed of the candidates")
    parser.add_argument("--rules", nargs="+", choices=RULES, default=list(RULES))
    parser.add_argument(
        "--latent-std", type=float, default=1.0, help="scale of the latents (<1: truncation)"
    )
    parser.add_argument(
        "--skip-real", action="store_true", help="skip the real training set's row (same every run)"
    )
    parser.add_argument("--out", type=Path, default=None, help="JSON (default: RUN/selection)")
    args = parser.parse_args(argv)
    if not args.data.is_file():
        print(f"skipped: BreastMNIST not found at {args.data} (set MEDISYNTH_DATA)")
        return 0
    real = read_medmnist(args.data)
    sets = {s: (real.images[s] / 255.0, real.labels[s]) for s in ("train", "val", "test")}
    counts = np.bincount(sets["train"][1])
    if len(counts) != 2:
        raise SystemExit(f"{args.data}: {len(counts)} classes; the margin rule needs two")
    package = load_package(args.run / "model")
    labels = np.repeat(np.arange(len(counts)), counts * args.oversample)
    noise = torch.Generator().manual_seed(args.seed)  # the draws of package.sample(seed=...)
    z = torch.randn(len(labels), package.config.model.latent_dim, generator=noise)
    with torch.no_grad():
        generator = package.family.inference_nets()["generator"]
        candidates = generator(z * args.latent_std, torch.from_numpy(labels)).float()
    stored = np.round(np.clip(package.to_source_units(candidates), 0, 255))  # as npz would hold
    images = (stored / 255.0).astype(np.float32)

    checker = train_classifier(*sets["train"], n_classes=len(counts), epochs=20, seed=123)
    checker_p = predict_proba(checker, images)[np.arange(len(labels)), labels]
    scores = {
        "none": -np.arange(len(labels), dtype=float),  # earliest drawn first
        "classifier": checker_p,
    }
    if {"discriminator", "discriminator-margin"} & set(args.rules):  # needs the checkpoint
        own, other = discriminator_scores(args.run, package, candidates, labels)
        scores.update({"discriminator": own, "discriminator-margin": own - other})

    results: dict[str, dict] = {
        "checker_agreement": [  # candidates whose class the checker confirms, per class
            round(float((checker_p[labels == c] >= 0.5).mean()), 3) for c in range(len(counts))
        ],
    }
    if not args.skip_real:
        real_utility = classification_utility(
            sets["train"],
            None,
            sets["test"],
            val=sets["val"],
            seeds=(0, 1),
            epochs=20,
            conditions=("real",),
        )
        results["real"] = {
            "utility": real_utility["real"]["auc"],
            "sklearn": sklearn_aucs(sets["train"], sets["test"]),
        }
    if "real" in results:
        print(f"real: {results['real']}")
    print(f"checker agreement: {results['checker_agreement']}")
    for rule in args.rules:
        keep = np.concatenate(
            [
                np.flatnonzero(labels == c)[np.argsort(-scores[rule][labels == c])[: counts[c]]]
                for c in range(len(counts))
            ]
        )
        chosen = (images[keep], labels[keep])
        utility = classification_utility(
            sets["train"],
            chosen,
            sets["test"],
            val=sets["val"],
            seeds=(0, 1),
            epochs=20,
            conditions=("synthetic", "real+synthetic"),
        )
        to_real, _ = knn(chosen[0], sets["train"][0])
        results[rule] = {
            "utility": {k: v["auc"] for k, v in utility.items()},
            "sklearn": sklearn_aucs(chosen, sets["test"]),
            "nn_median": round(median_nn_distance(chosen[0]), 3),
            "nearest_real_median": round(float(np.median(to_real)), 3),
        }
        row = results[rule]
        print(
            f"{rule:>21}: synthetic only {row['utility']['synthetic']['mean']:.3f} "
            f"± {row['utility']['synthetic']['std']:.3f}, real + synthetic "
            f"{row['utility']['real+synthetic']['mean']:.3f}; sklearn {row['sklearn']}; "
            f"NN {row['nn_median']}, nearest real {row['nearest_real_median']}",
            flush=True,
        )
    out = args.out or args.run / "selection"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"selection_seed{args.seed}.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

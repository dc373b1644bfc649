"""The ``medisynth`` command line: a thin typer layer over the Python API.

Each sub-command parses its options, calls the API and prints the result. Errors the user can
fix (:class:`~medisynth.errors.MedisynthError`, and the operating system refusing a path) are
printed as one line ``error: ...`` with exit status 2; anything unexpected is printed as an
internal error (status 3) unless ``--debug`` is given.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer
from typer.exceptions import TyperException

from medisynth.errors import MedisynthError
from medisynth.validate.registry import DEFAULT_METRICS, METRICS

app = typer.Typer(
    name="medisynth",
    help="Train, apply and validate GANs on medical images.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_state = {"debug": False}


@app.callback()
def _main_options(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log more detail."),
) -> None:
    _state["debug"] = debug
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, format="%(levelname)s %(message)s"
    )


# --------------------------------------------------------------------------- info
@app.command()
def info(
    path: Path = typer.Argument(..., help="A file or folder: NIfTI, DICOM, PNG/TIFF/JPEG, npz."),
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
    series: str | None = typer.Option(
        None, "--series", help="Series Instance UID, for a folder holding several DICOM series."
    ),
) -> None:
    """Describe an image, volume, DICOM series, MedMNIST file or image folder."""
    from medisynth.data.describe import describe

    description = describe(path, series_uid=series)
    typer.echo(description.to_json() if as_json else description.to_text())


# --------------------------------------------------------------------------- train
@app.command()
def train(
    config: Path = typer.Argument(..., help="Run config (YAML); see examples/*.yaml."),
    set_: list[str] = typer.Option(
        [], "--set", help="Override a setting: --set train.steps=500 (repeatable)."
    ),
    resume: bool = typer.Option(
        False, "--resume", help="Continue from <train.out_dir>/checkpoints/last.pt."
    ),
    overwrite: bool = typer.Option(
        False,
        "--overwrite",
        help="Replace the run in train.out_dir (only the files medisynth wrote there).",
    ),
) -> None:
    """Train a GAN; writes checkpoints, sample grids, metrics and a model package.

    A train.out_dir that already holds a run is refused: continue it with --resume, replace it
    with --overwrite, or choose another train.out_dir.
    """
    import os

    from medisynth.config import load_config
    from medisynth.training.engine import Trainer

    result = Trainer(load_config(config, set_)).fit(resume=resume, overwrite=overwrite)
    if result.world_size == 1 or int(os.environ.get("RANK", "0")) == 0:
        typer.echo(
            f"{result.status}: {result.steps} steps in {result.wall_seconds:.0f} s "
            f"({result.images_per_second:.0f} images/s, {result.precision} on {result.device})"
        )
        typer.echo(
            f"model package: {result.package}"
            if result.package
            else f"checkpoint: {result.checkpoint} (continue with --resume)"
        )
    if result.status == "interrupted":
        raise typer.Exit(130)


# --------------------------------------------------------------------------- generate
@app.command()
def generate(
    model: Path = typer.Argument(..., help="A model package folder (<run>/model)."),
    n: int | None = typer.Option(None, "-n", help="Number of images."),
    out: Path = typer.Option(..., "-o", "--out", help="Output folder (new or empty)."),
    fmt: str = typer.Option(
        "png", "--format", "-f", help="png, nifti, npz or dicom (flagged synthetic)."
    ),
    class_balance: str | None = typer.Option(
        None, "--class-balance", help="'0.5,0.5' (weights in class order) or '0:300,1:700'."
    ),
    seed: int = typer.Option(0, "--seed", help="Noise seed; the same seed gives the same images."),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace an earlier generated set in OUT."
    ),
    size: str | None = typer.Option(
        None,
        "--size",
        help="Multiscale models: volume size, any size, e.g. 512 or 512x512x256 (NIfTI, tiled).",
    ),
    masks: Path | None = typer.Option(
        None,
        "--masks",
        help="Mask -> image models: a folder (or file) of label maps; writes image + mask "
        "pairs (-n: how many, default one per mask; --format npz or png).",
    ),
    augment_masks: bool = typer.Option(
        False, "--augment-masks", help="With --masks: new layouts (flips, turns, elastic)."
    ),
    precision: str = typer.Option(
        "auto",
        "--precision",
        help="With --size: auto (bf16 where the CPU has it), bf16 or fp32.",
    ),
    truncation: float | None = typer.Option(
        None,
        "--truncation",
        metavar="PSI",
        help="Style models: truncation psi in [0, 1], per class around its mean style "
        "(1 = none; lower = more typical, less varied).",
    ),
) -> None:
    """Generate a labelled synthetic dataset in the source's units."""
    from medisynth.apply.generate import generate as run_generate
    from medisynth.precision import resolve_inference_precision

    if masks is not None:  # mask -> image models (medisynth.apply.mask2image)
        from medisynth.apply.mask2image import generate_pairs
        from medisynth.errors import ConfigError

        if class_balance is not None or size is not None or truncation is not None:
            raise ConfigError(
                "--masks makes one image per mask; drop --class-balance/--size/--truncation"
            )

        pairs = generate_pairs(
            model, masks, out, n, fmt, seed=seed, augment=augment_masks, overwrite=overwrite
        )
        typer.echo(f"wrote {pairs.count} image + mask pairs ({pairs.format}) to {pairs.out_dir}")
        return

    grid = None
    if size is not None:  # models that sample in tiles (medisynth.apply.volumes)
        from medisynth.apply.volumes import parse_size

        grid = parse_size(size)
    result = run_generate(
        model,
        n,
        out,
        fmt=fmt,
        class_balance=class_balance,
        seed=seed,
        overwrite=overwrite,
        progress=True,
        size=grid,
        precision=resolve_inference_precision(precision),
        truncation=truncation,
    )
    typer.echo(
        f"wrote {result.count} images ({result.format}) to {result.out_dir}: {result.class_counts}"
    )


# --------------------------------------------------------------------------- demo
@app.command()
def demo(
    out: Path = typer.Option(Path("demo-output"), "--out", help="Output folder."),
    minutes: float = typer.Option(6.0, "--minutes", help="Training time budget."),
    steps: int = typer.Option(4000, "--steps", help="Maximum training steps."),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Offline demo: a class-conditional GAN on MNI152 brain slices (3 views)."""
    from medisynth.demo import run_demo

    summary = run_demo(out, minutes=minutes, steps=steps, seed=seed)
    typer.echo(f"demo done: see {out / 'summary.md'}")
    diversity = summary["diversity"]
    typer.echo(
        f"median nearest-neighbour L2: synthetic {diversity['synthetic_median_nn_l2']}, "
        f"real {diversity['real_median_nn_l2']}"
    )


# --------------------------------------------------------------------------- model card
@app.command()
def card(
    model: Path = typer.Argument(..., help="A model package folder."),
    add_metrics: Path | None = typer.Option(
        None, "--add-metrics", help="A `medisynth validate` report.json to record in the card."
    ),
) -> None:
    """Print a model's card as Markdown (optionally recording validation metrics first)."""
    import json

    from medisynth.errors import ConfigError, ReadError
    from medisynth.package import attach_metrics, model_card_markdown, read_card

    card_data = read_card(model)
    if add_metrics is not None:
        if add_metrics.exists() and not add_metrics.is_file():  # a folder, pipe or device
            raise ReadError(add_metrics, "not a file", "give the report.json of a validate run")
        try:
            report = json.loads(add_metrics.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ReadError(add_metrics, f"not a readable validation report ({err})") from err
        try:
            card_data = attach_metrics(model, report)
        except ConfigError as err:  # the JSON is not a report
            raise ReadError(add_metrics, str(err)) from err
    typer.echo(model_card_markdown(card_data))


# --------------------------------------------------------------------------- export / push
@app.command()
def export(
    source: Path = typer.Argument(
        ..., help="A set written by `medisynth generate`: its folder, a subfolder or a file."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="A new or empty output folder."),
    modality: str | None = typer.Option(
        None, help="CT or MR for volumes of a model that records no modality (else its own)."
    ),
    description: str | None = typer.Option(None, help="Series description."),
    model_id: str | None = typer.Option(
        None, "--model-id", help="Check that this model made the set (the id comes from it)."
    ),
) -> None:
    """Export images that medisynth generated as DICOM flagged Synthetic Data = YES.

    Each file is checked against the set's generation.json (its sha256); anything else, such
    as a real image or a changed file, is refused and nothing is written."""
    from medisynth.export.provenance import export_generated

    files = export_generated(
        source, out, modality=modality, model_id=model_id, description=description
    )
    typer.echo(f"wrote {len(files)} DICOM file(s) to {out}")


@app.command()
def push(
    paths: list[Path] = typer.Argument(..., help="DICOM files or folders to send."),
    to: str = typer.Option(..., "--to", help="dicom://AET@host:port or dicomweb://host:port/path"),
    aet: str = typer.Option("MEDISYNTH", "--aet", help="Our (calling) AE title."),
    timeout: float = typer.Option(30.0, help="Seconds to wait for the server."),
    allow_real: bool = typer.Option(
        False, "--allow-real", help="Also send objects not flagged Synthetic Data = YES."
    ),
) -> None:
    """Send DICOM to a PACS by C-STORE or DICOMweb STOW-RS; fails unless all arrive."""
    from medisynth.export.pacs import push as push_files

    result = push_files(paths, to, calling_aet=aet, timeout=timeout, allow_real=allow_real)
    typer.echo(result.summary())


# --------------------------------------------------------------------------- validate
# options of the utility experiments that validate and utility-curve share
PairedBootstrapOption = Annotated[
    int,
    typer.Option(
        "--paired-bootstrap",
        help="Utility/segmentation: resamples of the paired real+classic+synthetic vs "
        "real+classic comparison (0: none).",
    ),
]
ClassicSyntheticOption = Annotated[
    bool,
    typer.Option(
        "--classic-synthetic",
        help="Utility/segmentation: also train on synthetic images with classic augmentation.",
    ),
]


@app.command()
def validate(
    real: str = typer.Option(
        ..., "--real", help="Real set: FILE.npz:split, image/NIfTI folder, .npy."
    ),
    synthetic: str | None = typer.Option(
        None, "--synthetic", help="Synthetic set (same forms); default: generated by --model."
    ),
    model: Path | None = typer.Option(
        None,
        "--model",
        help="The model package under test: named in the report, its card gets the metrics; "
        "without --synthetic it generates the set (as many as --train, its class balance).",
    ),
    output: Path = typer.Option(..., "--output", "-o", help="Report folder."),
    train: str | None = typer.Option(None, "--train", help="The generator's training set."),
    heldout: str | None = typer.Option(
        None, "--heldout", help="Real images unseen in training (calibrates memorisation)."
    ),
    metrics: str = typer.Option(
        ",".join(DEFAULT_METRICS), "--metrics", help=f"Comma-separated: {', '.join(METRICS)}."
    ),
    extractor: str = typer.Option(
        "inception",
        "--extractor",
        help="inception[:fp32|:bf16], radiomics, radiomics-lite, pixels, torchscript:PATH, "
        "onnx:PATH.",
    ),
    frd_extractor: str = typer.Option(
        "radiomics",
        "--frd-extractor",
        help="Features of FRD: radiomics (original image), radiomics:filtered (+ LoG and "
        "wavelet images, as FRDv1), radiomics-lite.",
    ),
    window: str = typer.Option(
        "auto", "--range", help="Intensity window to [0, 1]: auto or LO,HI."
    ),
    cache_dir: Path | None = typer.Option(None, "--cache-dir", help="Feature cache folder."),
    seeds: int = typer.Option(3, "--seeds", help="Seeds of the utility experiments."),
    epochs: int = typer.Option(
        20, "--epochs", help="Epochs of the utility classifier and segmentation U-Net."
    ),
    seed: int = typer.Option(
        0, "--seed", help="Seed of subsets, k-means, utility, bootstrap and --model generation."
    ),
    bootstrap: int = typer.Option(
        200, "--bootstrap", help="Bootstrap resamples of the 95% intervals (0: none)."
    ),
    fid_bootstrap: int = typer.Option(
        0, "--fid-bootstrap", help="Half-sample resamples of the FID interval (0: none; costly)."
    ),
    paired_bootstrap: PairedBootstrapOption = 2000,
    classic_synthetic: ClassicSyntheticOption = False,
    mask: str | None = typer.Option(
        None, "--mask", help="Masks (one per real image, non-zero inside) for paired metrics."
    ),
    real_masks: str | None = typer.Option(
        None, "--real-masks", help="Segmentation masks of --real (a set spec, same order)."
    ),
    synthetic_masks: str | None = typer.Option(
        None, "--synthetic-masks", help="Segmentation masks of --synthetic (a set spec)."
    ),
    train_masks: str | None = typer.Option(
        None, "--train-masks", help="Segmentation masks of --train (a set spec)."
    ),
    study: Path | None = typer.Option(
        None,
        "--study",
        help="A reader study folder (`medisynth study`): its statistics join the report and "
        "the model card.",
    ),
) -> None:
    """Compare synthetic with real images: fidelity, diversity, memorisation, utility -> report."""
    from medisynth.validate.protocol import ValidateOptions
    from medisynth.validate.protocol import validate as run

    options = ValidateOptions(
        metrics=tuple(m.strip() for m in metrics.split(",") if m.strip()),
        extractor=extractor,
        radiomics_extractor=frd_extractor,
        window=window,
        cache_dir=None if cache_dir is None else str(cache_dir),
        seeds=seeds,
        epochs=epochs,
        seed=seed,
        bootstrap=bootstrap,
        fid_bootstrap=fid_bootstrap,
        paired_bootstrap=paired_bootstrap,
        classic_synthetic=classic_synthetic,
        progress=sys.stderr.isatty(),
    )
    report = run(
        real, synthetic, output, options, train=train, heldout=heldout, mask=mask,
        real_masks=real_masks, synthetic_masks=synthetic_masks, train_masks=train_masks,
        model=model, study=study,
    )  # fmt: skip
    for line in report["verdicts"]:
        typer.echo(line)
    typer.echo(f"report: {output / 'report.json'}, {output / 'report.html'}")
    if model is not None:
        typer.echo(f"metrics recorded in the model card: {model / 'model_card.json'}")


# --------------------------------------------------------------------------- utility-curve
@app.command("utility-curve")
def utility_curve(
    config: Path = typer.Argument(
        ..., help="Training config of a class-conditional GAN on labelled images (YAML)."
    ),
    output: Path = typer.Option(
        ..., "--output", "-o", help="Curve folder (a curve there is resumed)."
    ),
    fractions: str = typer.Option(
        "0.1,0.25,1.0", "--fractions", help="Fractions of the real training set, comma-separated."
    ),
    minutes: float = typer.Option(5.0, "--minutes", help="Training minutes of each GAN."),
    seeds: int = typer.Option(
        1, "--seeds", help="Repetitions per fraction (subset, GAN, synthetic set)."
    ),
    test: str | None = typer.Option(
        None, "--test", help="Real test set (default: the test split of a MedMNIST file)."
    ),
    val: str | None = typer.Option(
        None,
        "--val",
        help="Real val set for best-epoch selection (default: a MedMNIST val "
        "split; 'none': last epoch).",
    ),
    classifier_seeds: int = typer.Option(
        3, "--classifier-seeds", help="Utility classifiers per condition and cell."
    ),
    epochs: int = typer.Option(20, "--epochs", help="Epochs of each utility classifier."),
    synthetic_ratio: float = typer.Option(
        1.0, "--synthetic-ratio", help="Synthetic images per real training image."
    ),
    bootstrap: int = typer.Option(
        200, "--bootstrap", help="Bootstrap resamples of each condition's AUC interval."
    ),
    paired_bootstrap: PairedBootstrapOption = 2000,
    classic_synthetic: ClassicSyntheticOption = False,
    set_: list[str] = typer.Option(
        [], "--set", help="Override a setting of CONFIG: --set train.threads=1 (repeatable)."
    ),
) -> None:
    """Utility against data fraction: per fraction, train the GAN on that subset, generate,
    compare real / +classic / synthetic / +synthetic classifiers -> curve.json, .csv, .html."""
    from medisynth.config import load_config
    from medisynth.errors import ConfigError
    from medisynth.validate.curve import CurveOptions
    from medisynth.validate.curve import utility_curve as run

    try:
        parsed = tuple(float(f) for f in fractions.split(",") if f.strip())
    except ValueError:
        raise ConfigError(
            f"--fractions must be numbers like 0.1,0.25,1.0, got {fractions!r}"
        ) from None
    options = CurveOptions(
        fractions=parsed, minutes=minutes, seeds=seeds, classifier_seeds=classifier_seeds,
        epochs=epochs, synthetic_ratio=synthetic_ratio, bootstrap=bootstrap,
        paired_bootstrap=paired_bootstrap, classic_synthetic=classic_synthetic,
        progress=sys.stderr.isatty(),
    )  # fmt: skip
    report = run(load_config(config, set_), output, options, test=test, val=val)
    for line in report["verdicts"]:
        typer.echo(line)
    typer.echo(f"report: {output / 'curve.html'}, {output / 'curve.json'}, {output / 'curve.csv'}")


# --------------------------------------------------------------------------- translate / enhance
# the options both commands share (one file-job driver runs both: medisynth.apply.jobs)
InputArgument = Annotated[
    Path,
    typer.Argument(
        metavar="INPUT",
        help="A PNG/TIFF image, a NIfTI/MGH volume, a DICOM series folder or a folder of images.",
    ),
]
OutputOption = Annotated[
    Path,
    typer.Option("-o", "--out", help="Output file (.nii.gz, .png, .npy) or folder (folder input)."),
]
AxisOption = Annotated[
    int | None,
    typer.Option(
        "--axis", help="Slice axis for a 2D model on volumes (default: the training axis)."
    ),
]
ModalityOption = Annotated[str | None, typer.Option("--modality", help="The input's modality.")]
OverwriteOption = Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs.")]
BatchSizeOption = Annotated[int, typer.Option("--batch-size", help="Slices per forward pass.")]
_SCALING_HELP = (
    "Input scaling: 'input' refits the training percentiles on each input (MR), "
    "'model' uses the training map (CT windows, integer ranges), 'auto' picks."
)


def _echo_outputs(head: str, lines: list[str]) -> None:
    typer.echo(head)
    for line in lines:
        typer.echo(f"  {line}")


@app.command()
def translate(
    model: Annotated[
        Path, typer.Argument(help="An image-to-image model package (e.g. pix2pix, cyclegan).")
    ],
    input_path: InputArgument,
    out: OutputOption,
    axis: AxisOption = None,
    modality: ModalityOption = None,
    overwrite: OverwriteOption = False,
    batch_size: BatchSizeOption = 16,
    source_scaling: Annotated[str, typer.Option("--source-scaling", help=_SCALING_HELP)] = "auto",
    brain_mask: Annotated[
        Path | None,
        typer.Option(
            "--brain-mask",
            help="The input's brain mask, for a model trained with data.normalisation: brain "
            "(default: the voxels above 0).",
        ),
    ] = None,
    ensemble: list[Path] = typer.Option(
        [],
        "--ensemble",
        help="Another model of the same task (e.g. the recipe trained with another seed); the "
        "output is the mean of every model's translation (repeatable).",
    ),
) -> None:
    """Translate images to the model's target domain (e.g. T1 -> T2), in the target's units
    (models trained with data.normalisation: brain: on the in-brain 0..1 scale)."""
    from medisynth.apply.translate import translate as run_translate

    result = run_translate(
        [model, *ensemble], input_path, out, axis=axis, modality=modality, overwrite=overwrite,
        batch_size=batch_size, source_scaling=source_scaling, brain_mask=brain_mask,
    )  # fmt: skip
    _echo_outputs(
        f"translated {len(result.outputs)} file(s) with {result.model_id}:", result.outputs
    )


@app.command()
def enhance(
    model: Annotated[Path, typer.Argument(help="A super-resolution model package (e.g. srgan).")],
    input_path: InputArgument,
    out: OutputOption,
    axis: AxisOption = None,
    modality: ModalityOption = None,
    overwrite: OverwriteOption = False,
    batch_size: BatchSizeOption = 16,
    scaling: Annotated[str, typer.Option("--scaling", help=_SCALING_HELP)] = "auto",
) -> None:
    """Super-resolve images or volumes (x2/x4); NIfTI outputs get the finer spacing."""
    from medisynth.apply.enhance import enhance as run_enhance

    result = run_enhance(
        model, input_path, out, axis=axis, modality=modality, overwrite=overwrite,
        batch_size=batch_size, scaling=scaling,
    )  # fmt: skip
    shapes = ["x".join(map(str, shape)) for shape in result.shapes]
    _echo_outputs(
        f"enhanced {len(result.outputs)} file(s) x{result.scale} with {result.model_id}:",
        [f"{path} {shape}" for path, shape in zip(result.outputs, shapes, strict=True)],
    )


# --------------------------------------------------------------------------- study
study_app = typer.Typer(
    help="Reader studies (visual Turing tests): create, invite, serve, analyze.",
    no_args_is_help=True,
)
app.add_typer(study_app, name="study")


@study_app.command("create")
def study_create(
    real: Annotated[str, typer.Option("--real", help="Real images (any set validate reads).")],
    synthetic: Annotated[str, typer.Option("--synthetic", help="Synthetic images.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The new study folder.")],
    n: Annotated[int, typer.Option("-n", help="Number of images in the study.")] = 100,
    synthetic_fraction: Annotated[
        float, typer.Option("--synthetic-fraction", help="Fraction of synthetic images.")
    ] = 0.5,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the image draw.")] = 0,
) -> None:
    """Draw real and synthetic images and write a blinded study folder."""
    from medisynth.study.create import create_study

    result = create_study(real, synthetic, out, n, synthetic_fraction, seed)
    typer.echo(
        f"study {result.folder}: {result.n_real} real + {result.n_synthetic} synthetic images, "
        f"{result.size[0]}x{result.size[1]} {result.bits}-bit PNG"
    )


@study_app.command("invite")
def study_invite(
    study: Annotated[Path, typer.Argument(help="The study folder.")],
    reader: Annotated[
        str | None, typer.Option("--reader", help="Reader name (a new token if known).")
    ] = None,
    admin: Annotated[bool, typer.Option("--admin", help="Print a new admin link.")] = False,
    base_url: Annotated[
        str, typer.Option("--base-url", help="Where the study is served.")
    ] = "http://127.0.0.1:8000",
) -> None:
    """Print a reader's personal link (or the admin link) with a new secret token."""
    from medisynth.errors import ConfigError
    from medisynth.study import store
    from medisynth.study.app import link

    if (reader is None) == (not admin):
        raise ConfigError("give either --reader NAME or --admin")
    conn = store.open_study(study)
    try:
        token = store.set_admin_token(conn) if admin else store.add_reader(conn, str(reader))
    finally:
        conn.close()
    typer.echo(link(base_url, token, admin=admin))


@study_app.command("serve")
def study_serve(
    study: Annotated[Path, typer.Argument(help="The study folder.")],
    host: Annotated[str, typer.Option("--host", help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port.")] = 8000,
) -> None:
    """Serve the study to its readers (127.0.0.1 unless --host says otherwise)."""
    from medisynth.study.app import serve

    serve(study, host=host, port=port)


@study_app.command("analyze")
def study_analyze(
    study: Annotated[Path, typer.Argument(help="The study folder.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Report folder.")],
) -> None:
    """Write report.json, answers.csv and report.html of a study's answers."""
    from medisynth.study.analysis import analyze_study

    summary = analyze_study(study, out)
    pooled = summary["pooled"]
    accuracy = "-" if pooled["accuracy"] is None else f"{pooled['accuracy']:.3f}"
    typer.echo(f"{pooled['n']} answers, pooled accuracy {accuracy}; report in {out}")


# --------------------------------------------------------------------------- entry point
def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit status: 0 done, 2 a usage or user error (one line
    ``error: ...``, no traceback; also the operating system refusing a path, e.g. no permission
    or no such folder, and running out of memory), 3 an internal error, 130 interrupted."""
    try:
        # not standalone: usage errors come here as exceptions, to print them as one line
        done = app(args=argv, prog_name="medisynth", standalone_mode=False)
        return done if isinstance(done, int) else 0
    except TyperException as err:  # a usage error: unknown option, missing argument, bad value
        where = getattr(getattr(err, "ctx", None), "command_path", "medisynth")
        typer.echo(f"error: {_one_line(err.format_message())} (see: {where} --help)", err=True)
        return 2
    except SystemExit as done:
        return done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    except MedisynthError as err:
        if _state["debug"]:
            raise
        typer.echo(f"error: {_one_line(str(err))}", err=True)
        return 2
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        return 130
    except OSError as err:
        if _state["debug"] or err.filename is None:  # not about a path: an internal error
            return _internal_error(err)
        where = err.filename if err.filename2 is None else f"{err.filename} -> {err.filename2}"
        typer.echo(
            f"error: {where}: {err.strerror or err}; check the path, its permissions and the "
            "free space",
            err=True,
        )
        return 2
    except MemoryError as err:
        if _state["debug"]:
            raise
        typer.echo(
            f"error: not enough memory ({_one_line(str(err)) or 'MemoryError'}); ask for less "
            "(fewer images, a smaller --batch-size or --size)",
            err=True,
        )
        return 2
    except Exception as err:  # the last guard before a bare traceback
        return _internal_error(err)
    return 0


def _internal_error(err: Exception) -> int:
    """Print an unexpected exception as an internal error (status 3), or re-raise it with
    ``--debug``."""
    if _state["debug"]:
        raise err
    typer.echo(
        f"internal error: {type(err).__name__}: {err}\n"
        "This is a bug in medisynth; run again with --debug for the traceback and report it.",
        err=True,
    )
    return 3


def _one_line(message: str) -> str:
    """A message on one line: its non-empty lines joined by '; '."""
    return "; ".join(line.strip() for line in message.splitlines() if line.strip())


if __name__ == "__main__":
    sys.exit(main())

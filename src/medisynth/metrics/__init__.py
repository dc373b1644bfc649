"""Metrics for synthetic medical images: features, distances, diversity, memorisation, utility.

Every metric takes plain arrays, ``(N, C, H, W)`` or ``(N, C, D, H, W)``, with intensities in
``[0, 1]`` (the convention of this package's metrics; :mod:`medisynth.validate` maps stored values
to it), or feature matrices ``(N, F)``:

- :mod:`~medisynth.metrics.features`: the feature-extractor registry (``inception``, ``radiomics``,
  ``radiomics-lite``, ``pixels``, ``torchscript:PATH``, ``onnx:PATH``) and an on-disk feature cache.
- :mod:`~medisynth.metrics.frechet`: FID, KID, FRD, relative FD, tri-planar FID for volumes.
- :mod:`~medisynth.metrics.prdc`: precision/recall/density/coverage, within-set NN distances and the
  mode-collapse verdict.
- :mod:`~medisynth.metrics.memorization`: nearest-neighbour search at scale, near-copies, the
  data-copying test C_T, real-vs-real duplicates.
- :mod:`~medisynth.metrics.paired`: SSIM, MS-SSIM, PSNR, MAE, NMSE (2D and 3D, optional mask).
- :mod:`~medisynth.metrics.utility`: downstream classification (AUC/ACC) and segmentation (Dice).
"""

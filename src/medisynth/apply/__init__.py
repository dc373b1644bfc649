"""The apply layer: load a model package, check what its family declares it can do, then read
inputs, run the model and write outputs.

* :mod:`medisynth.apply.generate`: labelled synthetic sets from models that sample from noise
  (``medisynth generate``), and the same images in memory (:func:`~.generate.generate_arrays`);
* :mod:`medisynth.apply.volumes`: images of any size from models that sample in tiles
  (``medisynth generate --size``), streamed to NIfTI;
* :mod:`medisynth.apply.mask2image`: image + mask pairs from mask -> image models
  (``medisynth generate --masks``);
* :mod:`medisynth.apply.translate` / :mod:`medisynth.apply.enhance`: image-to-image and
  super-resolution models on files (``medisynth translate`` / ``medisynth enhance``), both through
  the one file-job driver of :mod:`medisynth.apply.jobs`;
* :mod:`medisynth.apply.common`: loading a package, checking its family's declared task, the
  fields every generation record holds.

Every generated set is written through :class:`medisynth.output_set.OutputSet`.
"""

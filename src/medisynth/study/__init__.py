"""Reader studies (visual Turing tests) of synthetic medical images: a blinded study folder
(:mod:`~medisynth.study.create`, :mod:`~medisynth.study.store`), a small web app for readers
(:mod:`~medisynth.study.app`) and the statistics of their answers
(:mod:`~medisynth.study.analysis`)."""

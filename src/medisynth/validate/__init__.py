"""Validation of synthetic images: the protocol behind ``medisynth validate`` and its reports.

See :func:`medisynth.validate.protocol.validate` and ``docs/validate.md``. Modules, from the
top: ``protocol`` (resolve the inputs, run the chosen metrics, write the reports), ``report``
(the HTML page), ``reader_study`` (a reader study's section, ``--study``), ``registry`` (the
metrics by name) over ``metric`` (what a metric is), ``context`` (the resolved inputs, shared
features), ``model_set`` (a set generated from a model), ``render`` (tables and figures),
``options``, ``results`` and ``keys``. The sets are read by :mod:`medisynth.data.sets`.
"""

from medisynth.validate.protocol import ValidateOptions, run_validation, validate

__all__ = ["ValidateOptions", "run_validation", "validate"]

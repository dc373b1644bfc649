"""Validation of synthetic images: the protocol behind ``medisynth validate`` and its reports.

See :func:`medisynth.validate.protocol.validate` and ``docs/validate.md``.
"""

from medisynth.validate.protocol import ValidateOptions, run_validation, validate

__all__ = ["ValidateOptions", "run_validation", "validate"]

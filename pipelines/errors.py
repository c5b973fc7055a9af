"""The pipeline's one error vocabulary.

Every refusal carries a machine-readable ``code`` (stable, snake_case) and a human ``message``.
``service`` maps these once to HTTP problem details; the CLI prints the code on stderr.
"""
from __future__ import annotations


class MesoscanError(Exception):
    """Base of every error the pipeline raises on purpose."""

    code = "error"

    def __init__(self, message: str, *, code: str | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def to_dict(self) -> dict:
        return {"code": self.code, "message": self.message}


class ImageRejected(MesoscanError):
    """The input cannot be analysed. ``retake`` tells whether a new photo would help
    (blurred, too dark, no face) as opposed to a file problem (corrupt, wrong format)."""

    code = "image_rejected"

    def __init__(self, code: str, message: str, *, retake: bool = False, details: dict | None = None):
        super().__init__(message, code=code)
        self.retake = retake
        self.details = details or {}   # e.g. the quality report of a photo the gate refused

    def to_dict(self) -> dict:
        return {"code": self.code, "message": self.message, "retake": self.retake, **self.details}


class ModelUnavailable(MesoscanError):
    """A model file in models/ is missing or does not match its recorded checksum."""

    code = "model_unavailable"


class InvalidInput(MesoscanError):
    """A non-image input (intake, knowledge file, parameter) is malformed.
    ``field`` names the offending field, ``source`` the file when there is one."""

    code = "invalid_input"

    def __init__(self, message: str, *, field: str | None = None, source: str | None = None):
        super().__init__(message)
        self.field = field
        self.source = source

    def to_dict(self) -> dict:
        return {"code": self.code, "message": self.message, "field": self.field, "source": self.source}

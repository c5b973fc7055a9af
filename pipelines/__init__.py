"""mesoscan's image analysis: pure functions on numpy arrays, dataclasses out.

Nothing in this package imports Flask, a database or ``service``.
"""

PIPELINE_VERSION = "0.10.0"

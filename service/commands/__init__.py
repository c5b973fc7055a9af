"""One module per CLI subcommand; each exposes ``register(subparsers)``.

A module's ``register`` adds its parser and sets ``func`` (args -> exit status) as default.
"""

COMMAND_MODULES = (
    "fsck",
    "analyze",
    "plan",
    "patient",
    "visit",
    "progress",
    "compare",
    "serve",
    "token",
    "user",
    "rescore",
    "report",
)

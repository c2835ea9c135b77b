"""Subcommands of the ``ringfence`` CLI: one module each, imported only when used.

Each module exposes ``register(subparsers)`` (adds its parser, with
``set_defaults(command_module=__name__)``) and ``run(args) -> int``.
"""

"""The ``edgecut`` command line: parses arguments, calls the packages, prints results.

Each subcommand lives in :mod:`edgecut.commands` as a module with ``register``
(add its parser) and ``run`` (do the work, return an exit code). Nothing heavy is
imported until a command needs it, so ``edgecut --help`` starts instantly.
"""

__version__ = "0.1.0"

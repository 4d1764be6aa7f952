"""The subcommands, in the order ``edgecut --help`` lists them."""

from edgecut.commands import (
    cloud,
    compress,
    demo,
    devices,
    edge,
    models,
    plan,
    profile,
    repository,
    simulate,
    split,
    sweep,
    testbed,
)

COMMANDS = [
    demo,
    models,
    devices,
    profile,
    plan,
    split,
    repository,
    cloud,
    edge,
    simulate,
    sweep,
    compress,
    testbed,
]

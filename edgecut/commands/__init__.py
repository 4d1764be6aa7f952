"""The subcommands, in the order ``edgecut --help`` lists them."""

from edgecut.commands import demo, devices, models, plan, profile, split

COMMANDS = [demo, models, devices, profile, plan, split]

"""``edgecut models``: the model zoo."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the model zoo")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from edgecut.output import console, print_json, table
    from partitioner.model.zoo import MODELS

    entries = MODELS.list()
    if args.json:
        print_json(
            {
                "models": [
                    {
                        "name": e.name,
                        "input_shape": list(e.input_shape),
                        "num_classes": e.num_classes,
                        "description": e.description,
                    }
                    for e in entries
                ]
            }
        )
        return 0
    rows = [
        [e.name, "x".join(map(str, e.input_shape)), e.num_classes, e.description] for e in entries
    ]
    console().print(
        table(
            "Model zoo (--model NAME; also pkg.module:factory or file.py:factory)",
            ["name", "input", "classes", "description"],
            rows,
            right={2},
        )
    )
    return 0

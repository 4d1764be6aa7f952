"""The model zoo: named networks in plain torch, built with deterministic weights.

``create_model("resnet18")`` returns a network in eval mode; ``list_models()`` lists
every entry with its input shape. Importing this package registers every family
module below; it builds no model and loads no data until asked.
"""

from partitioner.model.zoo import alexnet, digits, googlenet, mobilenet, resnet, vgg
from partitioner.model.zoo.registry import (
    ModelEntry,
    create_model,
    get_entry,
    list_models,
    register_model,
)

__all__ = [
    "ModelEntry",
    "alexnet",
    "create_model",
    "digits",
    "get_entry",
    "googlenet",
    "list_models",
    "mobilenet",
    "register_model",
    "resnet",
    "vgg",
]

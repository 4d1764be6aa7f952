"""The model zoo: named networks in plain torch, built with deterministic weights.

``create_model("resnet18")`` returns a network in eval mode; ``MODELS.list()`` lists
every entry with its input shape. Importing this package registers every family
module below; it builds no model and loads no data until asked.
"""

from partitioner.model.zoo import (
    alexnet,
    digits,
    efficientnet,
    ghostnet,
    googlenet,
    mnist,
    mobilenet,
    mobilenetv3,
    resnet,
    shufflenet,
    squeezenet,
    vgg,
)
from partitioner.model.zoo.registry import MODELS, ModelEntry, create_model, register_model

__all__ = [
    "MODELS",
    "ModelEntry",
    "alexnet",
    "create_model",
    "digits",
    "efficientnet",
    "ghostnet",
    "googlenet",
    "mnist",
    "mobilenet",
    "mobilenetv3",
    "register_model",
    "resnet",
    "shufflenet",
    "squeezenet",
    "vgg",
]

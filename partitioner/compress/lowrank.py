"""``lowrank``: factorise convolutions and linear layers into thinner ones, then fine-tune.

``svd``: a k x k convolution W (Cout, Cin·k·k) = U S Vᵀ keeps the top r singular
directions and becomes a k x k convolution to r channels (√S Vᵀ) followed by a
1 x 1 convolution to Cout (U √S): r·(Cin·k² + Cout) multiply-adds per pixel
instead of Cout·Cin·k². A linear layer becomes two. ``tucker2``: the kernel is
reduced along both channel modes (HOSVD): 1 x 1 to r_in, k x k core r_in -> r_out,
1 x 1 to Cout. The rank of each layer keeps a given fraction of the squared
singular values ("energy"); a layer is factorised only where that saves FLOPs.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from partitioner.compress.config import LowRankConfig
from partitioner.compress.head import Context, Head
from partitioner.compress.measure import accuracy
from partitioner.compress.registry import METHODS, Method
from partitioner.compress.training import train_student
from partitioner.errors import EdgecutError


def rank_for_energy(singular: torch.Tensor, energy: float) -> int:
    """The fewest leading singular values whose squares hold ``energy`` of the total."""
    power = singular.double() ** 2
    total = float(power.sum())
    if total == 0:
        return 1
    cumulative = torch.cumsum(power, 0) / total
    return int(torch.searchsorted(cumulative, torch.tensor(energy, dtype=torch.float64)).item()) + 1


def _conv(
    cin: int, cout: int, kernel: tuple[int, ...], weight: torch.Tensor, like: nn.Conv2d | None
) -> nn.Conv2d:
    options: dict[str, Any] = {}
    if like is not None:
        options = {"stride": like.stride, "padding": like.padding, "dilation": like.dilation}
    conv = nn.Conv2d(cin, cout, kernel, bias=False, **options)  # type: ignore[arg-type]
    with torch.no_grad():
        conv.weight.copy_(weight.reshape(conv.weight.shape))
    return conv


def svd_factorize(layer: nn.Module, energy: float) -> nn.Module | None:
    """Two thinner layers computing a rank-r approximation of ``layer``, or None if no gain."""
    if isinstance(layer, nn.Linear):
        w = layer.weight.detach().double()  # (out, in)
        out_f, in_f = w.shape
    elif isinstance(layer, nn.Conv2d) and layer.groups == 1:
        w = layer.weight.detach().double().reshape(layer.out_channels, -1)  # (Cout, Cin·k·k)
        out_f, in_f = w.shape
    else:
        return None
    u, s, vh = torch.linalg.svd(w, full_matrices=False)
    rank = rank_for_energy(s, energy)
    if rank * (in_f + out_f) >= in_f * out_f:
        return None
    root = s[:rank].sqrt()
    first = (root[:, None] * vh[:rank]).float()  # (r, in)
    second = (u[:, :rank] * root[None, :]).float()  # (out, r)
    bias = layer.bias
    if isinstance(layer, nn.Linear):
        a, b = nn.Linear(in_f, rank, bias=False), nn.Linear(rank, out_f, bias=bias is not None)
        with torch.no_grad():
            a.weight.copy_(first)
            b.weight.copy_(second)
            if bias is not None:
                b.bias.copy_(bias)
        return nn.Sequential(a, b)
    assert isinstance(layer, nn.Conv2d)
    spatial = _conv(layer.in_channels, rank, layer.kernel_size, first, layer)
    mix = nn.Conv2d(rank, layer.out_channels, 1, bias=bias is not None)
    with torch.no_grad():
        mix.weight.copy_(second.reshape(mix.weight.shape))
        if bias is not None and mix.bias is not None:
            mix.bias.copy_(bias)
    return nn.Sequential(spatial, mix)


def tucker2_factorize(layer: nn.Module, energy: float) -> nn.Module | None:
    """1x1 (Cin -> r_in), k x k core (r_in -> r_out), 1x1 (r_out -> Cout); linear layers: SVD."""
    if isinstance(layer, nn.Linear):
        return svd_factorize(layer, energy)
    if not isinstance(layer, nn.Conv2d) or layer.groups != 1 or layer.kernel_size == (1, 1):
        return svd_factorize(layer, energy)
    w = layer.weight.detach().double()  # (Cout, Cin, kh, kw)
    cout, cin, kh, kw = w.shape
    u_out, s_out, _ = torch.linalg.svd(w.reshape(cout, -1), full_matrices=False)
    u_in, s_in, _ = torch.linalg.svd(w.transpose(0, 1).reshape(cin, -1), full_matrices=False)
    r_out, r_in = rank_for_energy(s_out, energy), rank_for_energy(s_in, energy)
    if cin * r_in + r_in * r_out * kh * kw + r_out * cout >= cout * cin * kh * kw:
        return None
    u_out, u_in = u_out[:, :r_out], u_in[:, :r_in]
    core = torch.einsum("oihw,or,is->rshw", w, u_out, u_in)  # (r_out, r_in, kh, kw)
    squeeze = _conv(cin, r_in, (1, 1), u_in.t().float(), None)
    spatial = _conv(r_in, r_out, (kh, kw), core.float(), layer)
    expand = nn.Conv2d(r_out, cout, 1, bias=layer.bias is not None)
    with torch.no_grad():
        expand.weight.copy_(u_out.float().reshape(expand.weight.shape))
        if layer.bias is not None and expand.bias is not None:
            expand.bias.copy_(layer.bias)
    return nn.Sequential(squeeze, spatial, expand)


FACTORIZERS: dict[str, Callable[[nn.Module, float], nn.Module | None]] = {
    "svd": svd_factorize,
    "tucker2": tucker2_factorize,
}


def _out_features(layer: nn.Module) -> int:
    weight: torch.Tensor = layer.weight  # type: ignore[assignment]
    return int(weight.shape[0])


def factorize(module: nn.Module, decomposition: str, energy: float) -> dict[str, Any]:
    """Replace every layer of ``module`` that a rank-``energy`` factorisation makes cheaper."""
    replace = FACTORIZERS[decomposition]
    targets = [
        (name, layer)
        for name, layer in module.named_modules()
        if name and isinstance(layer, (nn.Conv2d, nn.Linear))
    ]
    ranks: dict[str, list[int]] = {}
    for name, layer in targets:
        new = replace(layer, energy)
        if new is None:
            continue
        parent_name, _, attr = name.rpartition(".")
        parent = module.get_submodule(parent_name) if parent_name else module
        setattr(parent, attr, new)
        ranks[name] = [_out_features(m) for m in list(new.children())[:-1]]
    return {"decomposition": decomposition, "energy": energy, "ranks": ranks}


def _val_accuracy(module: nn.Module, ctx: Context) -> float:
    return accuracy(module, ctx.tail, ctx.data.x_val, ctx.data.y_val)


def _choose_energy(head: Head, ctx: Context, config: LowRankConfig) -> tuple[nn.Module, dict]:
    """The factorised, fine-tuned head at the lowest energy within the accuracy budget.

    Accuracy falls as the energy does, so the energies are bisected: each trial is
    factorised and fine-tuned like the final head, and judged on the validation split.
    """
    assert config.accuracy_budget is not None
    energies = sorted(config.energies)
    reference = _val_accuracy(ctx.teacher, ctx)
    trials: dict[float, tuple[float, nn.Module, dict[str, Any]]] = {}

    def trial(energy: float) -> float:
        if energy not in trials:
            module = copy.deepcopy(head.module)
            note = factorize(module, config.decomposition, energy)
            if note["ranks"]:
                train_student(module, ctx, config.train, task=f"lowrank: energy {energy:g}")
            trials[energy] = (_val_accuracy(module.eval(), ctx), module, note)
        return trials[energy][0]

    def meets(energy: float) -> bool:
        return reference - trial(energy) <= config.accuracy_budget  # type: ignore[operator]

    low, high = 0, len(energies) - 1
    if not meets(energies[high]):
        best = max(trials, key=lambda e: trials[e][0])
        raise EdgecutError(
            f"lowrank: no energy in {energies} keeps validation accuracy within "
            f"{config.accuracy_budget:g} points of {reference:.2f}%: the best found was energy "
            f"{best:g} at {trials[best][0]:.2f}% (drop {reference - trials[best][0]:.2f} points)"
        )
    while low < high:
        mid = (low + high) // 2
        if meets(energies[mid]):
            high = mid
        else:
            low = mid + 1
    accuracy, module, note = trials[energies[high]]
    tried = [{"energy": e, "val_accuracy": trials[e][0]} for e in sorted(trials)]
    return module, {
        **note,
        "val_accuracy_before": reference,
        "val_accuracy": accuracy,
        "tried": tried,
    }


def lowrank(head: Head, ctx: Context, config: LowRankConfig) -> Head:
    if not head.trainable:
        raise EdgecutError("lowrank needs a float head: put int8 last in a pipeline")
    if config.accuracy_budget is None:
        factored = _structure(head, ctx, config)
        train_student(factored.module, ctx, config.train, task="lowrank: fine-tune")
        return factored
    module, note = _choose_energy(head, ctx, config)
    if not note["ranks"]:
        raise _no_gain(note["energy"])
    return head.replaced(module.eval(), notes={"lowrank": note})


def _no_gain(energy: float) -> EdgecutError:
    return EdgecutError(
        f"lowrank: at energy {energy:g} no layer of the head gets cheaper by factorising; "
        "lower the energy"
    )


def _structure(head: Head, ctx: Context, config: LowRankConfig) -> Head:
    """The factorised head, untrained; with a budget, at the lowest energy (a lower bound)."""
    if not head.trainable:
        raise EdgecutError("lowrank needs a float head: put int8 last in a pipeline")
    energy = config.energy if config.accuracy_budget is None else min(config.energies)
    module = copy.deepcopy(head.module)
    note = factorize(module, config.decomposition, energy)
    if not note["ranks"]:
        raise _no_gain(energy)
    return head.replaced(module.eval(), notes={"lowrank": note})


METHODS.register(
    Method(
        "lowrank",
        LowRankConfig,
        lowrank,
        _structure,
        "low-rank factorisation of convs and linears (SVD or Tucker-2), then distillation",
    )
)

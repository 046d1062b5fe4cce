"""DASS search space, discrete form: a DARTS cell network in which every conv and the classifier are
sparse layers (SparseConv2d / SparseLinear with learnable top-k scores).

Dims, per cell type t ∈ {normal, reduce} and intermediate node i ∈ 0..3:
  t.n{i}.inputs  the two distinct input states "a-b" (0, 1 = the two previous cells, 2.. = earlier nodes)
  t.n{i}.op0/op1 the op on each input (the 7 DARTS ops; `none` is never part of a derived cell)
  t.keep         keep ratio of every sparse layer in cells of type t
  t.structure    the sparsity structure of the cells of type t, only when `structures` lists several:
                 `unstructured` (the `mask` option), `channel` (whole output channels) or N:M (e.g. `2:4`;
                 a depthwise conv, whose inputs per group are not a multiple of M, stays unstructured at
                 t.keep; the layers N:M fits keep N of M whatever t.keep). Stem and classifier stay
                 unstructured. The default (`[unstructured]`) keeps the dims, archs and trials of before; the
                 supernet (`--strategy differentiable`) searches only that default.
The keep ratio is per cell type — not per layer — so the dims stay few (30) and the choice the DASS paper
makes (one ratio for the whole net) is a corner of the space; stem and classifier follow the normal cells'
ratio unless `stem_head_keep` fixes their own. `allocation` (default `uniform`: every layer at its cell type's
ratio, as the authors) can spread the weights those ratios keep over the layers instead (`er`, `erk` of
sparsenas.ops.allocation; a grouped conv scored by the shape of one group, so a depthwise conv counts as kernels
of 1×1×k×k): the overall density stays, and the depthwise kernels of sep/dil convs (9 or 25 weights each), which
a low uniform ratio thins out (PAPERS.md's DASS trap), stay denser — at the pointwise convs' cost. Measured on
digits at keep 0.1 (preset training, 3 seeds), an all-sep/dil-conv arch: uniform 0.74, erk 0.51 val acc; so
`uniform` stays the default. Reported `sparsity` counts every sparse layer.
Sized for small inputs: C=8, 3 cells (reductions at 1/3 and 2/3 of the depth), no auxiliary head,
no drop-path.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from ..ops.channel_align import align_channel_masks
from ..ops.masks import mask_kind
from ..schema import OPT_NUM, Field, count, number, numbers, one_of
from ..space import Arch, Categorical, SuperNet, register_space
from .dass_net import ALLOCATION_METHODS, CELL_TYPES, NODES, OPS, Cell, DassNetwork, Sparse, input_pairs, reallocate
from .dass_supernet import DassSupernetSearch
from .structures import structure_mask, structures_field
from .trained import TrainedSpace


@register_space("dass")
class DassSpace(TrainedSpace, SuperNet):
    options_schema = {
        "C": count(8),
        "layers": count(3),
        "stem_multiplier": count(3),
        "keep_ratios": numbers([0.1, 0.2, 0.3, 0.5], 0, 1, low_open=True),
        "stem_head_keep": number(None, 0, 1, low_open=True, types=OPT_NUM),
        # mask_kind raises its own ConfigError for an unknown spec
        "mask": Field("scores", (str,), lambda v: mask_kind(v).pattern != "nm",
                      "cannot be N:M (N:M does not fit dass: depthwise convs have one input channel; "
                      "use scores, random, magnitude or channel)"),
        "ops": Field(list(OPS), (list,), bool, "must be a non-empty list of ops", choices=tuple(OPS)),
        "allocation": one_of("uniform", ALLOCATION_METHODS),
        "structures": structures_field(),
    }

    def __init__(self, **options):
        super().__init__(**options)
        o = self.options
        ratios = o["keep_ratios"]
        self._dims = {}
        for kind in CELL_TYPES:
            for n in range(NODES):
                self._dims[f"{kind}.n{n}.inputs"] = Categorical(input_pairs(n))
                self._dims[f"{kind}.n{n}.op0"] = Categorical(o["ops"])
                self._dims[f"{kind}.n{n}.op1"] = Categorical(o["ops"])
            self._dims[f"{kind}.keep"] = Categorical([float(r) for r in ratios])
            if len(o["structures"]) > 1:
                self._dims[f"{kind}.structure"] = Categorical(list(o["structures"]))

    def dims(self):
        return dict(self._dims)

    def label(self, arch: Arch) -> str:
        def cell(kind):
            nodes = []
            for n in range(NODES):
                a, b = arch[f"{kind}.n{n}.inputs"].split("-")
                nodes.append(f"{arch[f'{kind}.n{n}.op0']}~{a}+{arch[f'{kind}.n{n}.op1']}~{b}")
            structure = "" if len(self.options["structures"]) < 2 else f",{arch[f'{kind}.structure']}"
            return f"{kind}(keep={arch[f'{kind}.keep']}{structure}):" + "|".join(nodes)

        return " ".join(cell(k) for k in CELL_TYPES)

    def supernet_search_class(self):
        if len(self.options["structures"]) > 1:
            raise ConfigError("--strategy differentiable: the DASS supernet learns unstructured score masks only; "
                              "search space.structures with a discrete strategy (random, evolution, tpe, ...)")
        return DassSupernetSearch

    def build(self, arch: Arch, input_shape, num_classes) -> nn.Module:
        o = self.options
        head_keep = arch["normal.keep"] if o["stem_head_keep"] is None else o["stem_head_keep"]

        def make_cell(kind, *shape):
            genes = [(arch[f"{kind}.n{n}.inputs"], (arch[f"{kind}.n{n}.op0"], arch[f"{kind}.n{n}.op1"]))
                     for n in range(NODES)]
            mask = structure_mask(arch.get(f"{kind}.structure", "unstructured"), o["mask"])
            return Cell(genes, Sparse(arch[f"{kind}.keep"], mask, fallback=o["mask"]), *shape)

        net = DassNetwork(input_shape, num_classes, o["C"], o["layers"], o["stem_multiplier"],
                          Sparse(head_keep, o["mask"]), make_cell)
        reallocate(net, o["allocation"], (net.stem[0], net.classifier) if o["stem_head_keep"] is not None else ())
        align_channel_masks(net, torch.zeros(1, *input_shape))  # a node's summed ops keep the same channels
        return net

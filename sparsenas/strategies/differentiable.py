"""`--strategy differentiable`: one supernet job — a one-shot search of the space's supernet, then the derived
arch as an ordinary trial.

The algorithm is the space's (DASS bi-level sparse search, TAS Gumbel width/depth search; see
`SuperNet.supernet_search_class`). The strategy proposes it once as a `SupernetJob`; the executor runs it
like any trial (locally or on a Ray worker, with `execution.cpus_per_trial` threads), reporting each epoch to
the loop — progress bar, TensorBoard `supernet/*`, and a checkpoint (state/supernet.pt, loadable with
weights_only=True) from which `--resume` continues a killed search — and journals the derived arch's result.
"""
from __future__ import annotations

from ..evaluation import SupernetJob
from ..schema import Field
from ..space import Arch, SuperNet
from .base import Strategy, register_strategy


@register_strategy("differentiable")
class DifferentiableSearch(Strategy):
    options_schema = {"options": Field({}, (dict,))}  # the space's SupernetSearch options, checked by it
    requires = (SuperNet,)

    def __init__(self, space, objective, seed, **options):
        super().__init__(space, objective, seed, **options)
        space.supernet_search_class().resolve_options(self.options["options"])  # bad options: exit 2, up front
        self.asked = False
        self.derived: Arch | None = None

    def ask(self) -> SupernetJob | None:
        if self.asked:
            return None  # one supernet job per run
        self.asked = True
        return SupernetJob(dict(self.options["options"]), self.seed)

    def tell(self, result) -> None:
        self.derived = result.arch

    def state_dict(self):
        return {"asked": self.asked, "derived": None if self.derived is None else dict(self.derived)}

    def load_state_dict(self, state):
        self.asked = bool(state["asked"])
        self.derived = None if state["derived"] is None else Arch(state["derived"])

"""`--strategy differentiable`: one-shot search of a supernet, then the derived arch as an ordinary trial.

The algorithm is the space's (DASS bi-level sparse search, TAS Gumbel width/depth search): the space
returns a `SupernetSearch`; this strategy runs its epochs, logs each epoch to TensorBoard, checkpoints
after every epoch (state/supernet.pt, loadable with weights_only=True) so that `--resume` continues a
killed search from its last finished epoch, and finally asks the derived arch to be trained and evaluated.
"""
from __future__ import annotations

import io
from typing import Any, ClassVar

import torch

from ..config import schema_from_defaults, validate_section
from ..journal import write_atomic
from ..space import Arch, SuperNet
from .base import Strategy, register_strategy


class SupernetSearch:
    """A space's supernet search: `epochs` calls of `run_epoch`, then `derive()`."""

    defaults: ClassVar[dict[str, Any]] = {}
    epochs: int

    def run_epoch(self, epoch: int) -> tuple[dict[str, float], dict[str, str]]:
        """Train one epoch; return scalars (losses, α entropy, FLOPs, ...) and text (current genotype)."""
        raise NotImplementedError

    def derive(self) -> Arch:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def load_state_dict(self, state: dict[str, Any]) -> None:
        raise NotImplementedError

    @classmethod
    def resolve_options(cls, options: dict[str, Any]) -> dict[str, Any]:
        return validate_section("strategy.options", options, schema_from_defaults(cls.defaults))


@register_strategy("differentiable")
class DifferentiableSearch(Strategy):
    defaults = {"options": {}}
    requires = (SuperNet,)

    def __init__(self, space, objective, seed, **options):
        super().__init__(space, objective, seed, **options)
        self.derived: Arch | None = None
        self.context = self.state_dir = self.log = None

    def ask(self) -> Arch | None:
        if self.derived is not None:
            return None  # one derived architecture per run
        if self.context is None:
            raise RuntimeError("differentiable strategy used before bind()")
        search = self.space.supernet_search(self.context, self.seed, self.options["options"])
        path = self.state_dir / "supernet.pt"
        start = 0
        if path.exists():
            saved = torch.load(path, weights_only=True)
            search.load_state_dict(saved["search"])
            start = saved["epoch"]
        for epoch in range(start, search.epochs):
            scalars, text = search.run_epoch(epoch)
            if self.log is not None:
                self.log(epoch, scalars, text)
            buf = io.BytesIO()
            torch.save({"epoch": epoch + 1, "search": search.state_dict()}, buf)
            write_atomic(path, buf.getvalue())
        self.derived = search.derive()
        return self.derived

    def tell(self, result) -> None:
        pass

    def state_dict(self):
        return {"derived": None if self.derived is None else dict(self.derived)}

    def load_state_dict(self, state):
        self.derived = None if state["derived"] is None else Arch(state["derived"])

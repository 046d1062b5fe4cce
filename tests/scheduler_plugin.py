"""A plug-in space for the scheduler tests (`sparsenas --allow-import scheduler_plugin`): trials that train for
train.epochs epochs, each reported through `on_epoch`, with a known learning curve."""
import time

from sparsenas.space import Categorical, SearchSpace, register_space


def curve(x: int, epoch: int, epochs: int) -> float:
    """val_acc of arch x after `epoch` + 1 epochs: better x learn faster and end higher (never tied)."""
    return round((x + 1) / 16 * (0.5 + 0.5 * (epoch + 1) / epochs), 6)


@register_space("curves")
class CurveSpace(SearchSpace):
    defaults = {"sleep_s": 0.0}

    def dims(self):
        return {"x": Categorical(tuple(range(16)))}

    def metrics(self):
        return frozenset({"val_acc", "test_acc", "train_loss", "cost"})

    def cheap_metrics(self, arch, context):
        return {"cost": float(arch["x"] % 4)}

    def evaluate(self, arch, seed, context, on_epoch=None):
        epochs = context.train["epochs"]
        for epoch in range(epochs):
            time.sleep(self.options["sleep_s"])
            if on_epoch is not None:
                on_epoch(epoch, {"val_acc": curve(arch["x"], epoch, epochs), "train_loss": 1.0 / (epoch + 1)})
        return {"val_acc": curve(arch["x"], epochs - 1, epochs), "test_acc": arch["x"] / 16,
                "train_loss": 1.0 / epochs}

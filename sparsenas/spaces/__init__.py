"""Built-in search spaces; importing this package registers them."""
from . import dass  # noqa: F401
from . import nb201  # noqa: F401
from . import tas  # noqa: F401
from . import sparse_ift  # noqa: F401
from . import node_subnet  # noqa: F401
from . import model  # noqa: F401
from .trained import TrainedSpace

__all__ = ["TrainedSpace"]

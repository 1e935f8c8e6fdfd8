"""Built-in datasets: one module each, registered at import (see engine.datasets.builtin)."""

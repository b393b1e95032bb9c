"""Importing this package registers every architecture: each module in it is imported, so a
new architecture file registers itself without being listed anywhere. Modules whose name
starts with `_` hold shared helpers and register nothing."""

import importlib
import pkgutil

ARCHITECTURE_MODULES = tuple(
    importlib.import_module(f"{__name__}.{module.name}")
    for module in pkgutil.iter_modules(__path__) if not module.name.startswith("_"))

"""Loaded by pytest before it collects anything (tests and the package's doctests).

The package and each of its sub-packages are imported here, before pytest collects the doctests
of ``sepl_tree/``. Under ``--import-mode=importlib`` pytest imports a module it collects by
itself when it is not in ``sys.modules`` yet, after importing its parent package: a module that
the parent's ``__init__`` imports (``sepl_tree.errors``) would then exist twice, and an error
raised as one ``SeplError`` class would pass an ``except`` for the other (a traceback where one
line was due; seen with ``pytest sepl_tree/errors.py tests/test_trust.py``).
"""

import importlib
import pkgutil

import sepl_tree

for _package in pkgutil.walk_packages(sepl_tree.__path__, "sepl_tree."):
    if _package.ispkg:
        importlib.import_module(_package.name)

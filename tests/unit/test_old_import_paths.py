"""Import paths users may have from before the services layer keep working for one release."""

from __future__ import annotations

import importlib
import sys

import pytest


def test_gatehub_node_is_a_deprecated_reexport_of_the_composition_root() -> None:
    sys.modules.pop("gatehub.node", None)
    with pytest.warns(DeprecationWarning, match=r"gatehub\.app\.node"):
        old = importlib.import_module("gatehub.node")
    from gatehub.app import node as new

    for name in ("Node", "serve", "run_loop", "Endpoints", "Component", "settle_heap"):
        assert getattr(old, name) is getattr(new, name), name

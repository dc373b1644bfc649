"""Imports go downward: the layers named in DESIGN.md form no import cycle.

The import graph is built by grimp from the source (every import counts, function-level ones
too: a deferred import is no way around a cycle). A general "no cycle at all" check belongs to
import-linter; these are the cycles this layering removed.
"""

from __future__ import annotations

import grimp
import pytest

#: pairs of packages (or modules) between which no chain of imports may run both ways
NO_CYCLE_BETWEEN = [  # (upper, lower): the upper one uses the lower one, never the reverse
    ("medisynth.config", "medisynth.gans"),
    ("medisynth.training", "medisynth.data"),
    ("medisynth.demo", "medisynth.training"),
    ("medisynth.validate", "medisynth.study"),  # validate --study adds a study's statistics
]

#: what the leaf of the configuration may import
SETTINGS_MAY_IMPORT = {"medisynth.errors", "medisynth.files"}


@pytest.fixture(scope="module")
def graph():  # type: ignore[no-untyped-def]
    return grimp.build_graph("medisynth", cache_dir=None)  # writes nothing


def _chain(graph, importer: str, imported: str) -> tuple[str, ...] | None:  # type: ignore[no-untyped-def]
    return graph.find_shortest_chain(importer=importer, imported=imported, as_packages=True)


@pytest.mark.parametrize(("upper", "lower"), NO_CYCLE_BETWEEN, ids=lambda name: name)
def test_no_import_cycle_between(graph, upper: str, lower: str) -> None:  # type: ignore[no-untyped-def]
    assert _chain(graph, upper, lower) is not None, f"{upper} no longer uses {lower}"
    assert _chain(graph, lower, upper) is None, f"{lower} imports {upper} (a cycle)"


def test_settings_is_a_leaf(graph) -> None:  # type: ignore[no-untyped-def]
    imported = {m for m in graph.find_upstream_modules("medisynth.settings")}
    assert imported <= SETTINGS_MAY_IMPORT, sorted(imported - SETTINGS_MAY_IMPORT)
    for module in imported:  # nothing below it imports anything above it
        assert "medisynth.settings" not in graph.find_upstream_modules(module)


def test_the_families_read_their_settings_from_the_leaf(graph) -> None:  # type: ignore[no-untyped-def]
    users = {m for m in graph.find_downstream_modules("medisynth.settings") if "gans" in m}
    assert "medisynth.gans.base" in users and "medisynth.gans.dcgan" in users
    for family_module in graph.find_children("medisynth.gans"):
        assert not graph.direct_import_exists(importer=family_module, imported="medisynth.config")


def test_the_old_names_stay_importable() -> None:
    from medisynth import config, gans, settings
    from medisynth.data.info import DataInfo
    from medisynth.gans import base

    assert config.DataConfig is settings.DataConfig and config.FamilyConfig is settings.FamilyConfig
    assert base.DataInfo is DataInfo and gans.DataInfo is DataInfo

"""Physics of galae: profiles, stellar populations, dust, gas, cosmology.

Submodules are imported explicitly (``from galae.physics import dust``); this package module
imports nothing heavy on purpose.
"""

from collections.abc import Mapping

__all__ = ["check_choice"]


def check_choice(kind: str, name: str, choices: Mapping[str, object]) -> str:
    """``name`` if it is a key of ``choices`` (a registry of physics choices, such as
    :data:`galae.physics.sfh.DISK_HISTORIES`), else a ValueError naming ``kind`` and the keys."""
    if name not in choices:
        raise ValueError(f"unknown {kind} {name!r}; choose one of {sorted(choices)}")
    return name

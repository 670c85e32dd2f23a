"""Physics of galae: profiles, stellar populations, dust, gas, cosmology.

Submodules are imported explicitly (``from galae.physics import dust``); this package module
imports nothing heavy on purpose.
"""

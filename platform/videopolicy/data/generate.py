"""Moved: scripted-demo generation runs the simulator, so it lives in `videopolicy.sim.robosuite.demos`.

This name remains only for `videopolicy.data.clips.demo_sources` (the clip stage generates missing
demos); `bench/import_graph.py` lists that import as the one edge from data/ to sim/ that is left.
"""

from videopolicy.sim.robosuite.demos import demo_key, generate_demos  # noqa: F401

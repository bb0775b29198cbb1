"""Demonstration data: robomimic-format HDF5 reading and writing, the clip pipeline (scripted demos are recorded by `videopolicy.sim.robosuite.demos`)."""

"""Demonstration data: scripted experts, robomimic-format HDF5 reading and writing."""

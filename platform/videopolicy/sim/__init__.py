"""Simulator backends: environment construction, render settings, state save/restore for replay."""

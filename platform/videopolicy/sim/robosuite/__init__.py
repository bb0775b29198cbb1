"""robosuite, the simulator of the main venv, in one home.

    env.py       environment construction, render settings and GL (EGL / OSMesa), state save/restore
    experts.py   scripted experts for the robosuite tasks (the sanity row `scripted_expert`, the demos)
    suite.py     the `robosuite` suite: protocol, episodes, the worker's `SimEnv`
    demos.py     stage `demos`: scripted-expert demonstrations recorded as parallel Ray tasks, into
                 robomimic HDF5 files (`videopolicy.data.hdf5`)

Demo generation lives here rather than in `videopolicy.data` because it runs the simulator and the
experts: `data` (file formats, the clip pipeline) stays below `sim` and imports nothing of it at module
level. The entry points that generate demos (`jobs/generate_demos.py`, the clip stage through
`data.clips.demo_sources`) call `videopolicy.sim.robosuite.demos`.
"""

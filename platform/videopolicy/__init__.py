"""videopolicy: the experiment platform for video-generation robot policies (Video Policy, arXiv 2508.00795).

Data flow (each arrow a stage with a content-addressed output under `<store>/<kind>/<key>/`):

    demos (robomimic HDF5) -> clips (Ray Data) -> stage1 video U-Net -> stage2 action head
        -> evaluation (Ray actors) -> tables + MLflow

Terminology (paper -> code):

| paper                              | code                                   |
|------------------------------------|----------------------------------------|
| demonstration                      | demo (`data.hdf5.Demo`)                |
| video horizon (0/16/32 steps)      | `ClipConfig.video_horizon`             |
| frames per camera / stride         | `ClipConfig.frames_per_camera`, `frame_stride` |
| action chunk (32 x 7)              | `ClipConfig.action_horizon`, `action_dim` |
| half-tasks transfer                | `ClipConfig.task_subset = "half"`      |
| stage 1 / stage 2 / joint          | `stage1`, `stage2`, `joint`            |
"""

__version__ = "0.1.0"

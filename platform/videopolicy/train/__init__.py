"""Training stages on Ray Train: stage1 (video), stage2 (action head) / joint / no_video_tuning / dp_resnet.

``launch.run_training(TrainSpec)`` is the one entry (jobs/train_stage.py and the sweep call it);
``loop.train_loop_per_worker`` is what each worker runs; ``checkpoint`` is the on-disk contract.
"""

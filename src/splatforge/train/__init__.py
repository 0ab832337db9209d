"""train: 3D Gaussian splatting from a posed capture (`splatforge.capture.load_capture`): the Trainer,
the schedule (gsplat's, or fitted to a time budget), densification strategies, optimization modules,
and `run.run_training` with its checkpoints and outputs."""

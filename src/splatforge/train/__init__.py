"""train: 3D Gaussian splatting from a posed capture (in progress: the capture loader)."""

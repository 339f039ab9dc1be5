"""The machinery of a run: flags, devices and towers, the loop's progress, checkpoints and signals, and the speed
kernels behind their one switch."""

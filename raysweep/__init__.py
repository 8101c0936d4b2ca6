"""raysweep: sweeps of machine unlearning for diffusion models, and the relearning attack that tests them."""
__version__ = "0.1.0"

"""Training: the loop (DDPM Algorithm 1 under Accelerate), one optimisation step, checkpoints, telemetry."""

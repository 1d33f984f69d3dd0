"""The diffusion math and the network: torch and numpy only, nothing else of ddpm."""

"""The commands users type: ``ddpm compare`` (experiments side by side), ``ddpm table`` (a paper table as a queued
grid, and the table from MLflow), ``ddpm replay`` (send a spooled MLflow log), ``ddpm isc-weights`` (fetch the IS
weights)."""

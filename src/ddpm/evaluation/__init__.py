"""Evaluation: FID, KID, precision/recall and IS; likelihood and rate–distortion; the papers' figures and tables."""

"""What every stage runs in: params validated first and one-line errors, where stages read and write, MLflow
tracking and its offline spool."""

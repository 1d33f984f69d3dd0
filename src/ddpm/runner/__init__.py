"""What every stage runs in: params validated first and one-line errors, where stages read and write, MLflow
tracking, its offline spool and the model registry; and the commands that build a paper table from a queued grid
(``tables``) and narrow `dvc exp show` (``compare``)."""

"""MLflow for the pipeline: a stage's run under its pipeline run (``runs``), the store (``store``), the log kept while
the store is out of reach (``spool``), the registered EMA model (``registry``, ``mlflow_model``), what a run read
(``lineage``), the params each stage declares (``stage_params``), and what the report reads back (``queries``).
Stages log through ``tracker.Tracker``."""

"""What every pipeline stage runs in: params validated first and one-line errors (``harness``), where stages read
and write (``paths``), the device and process group of a compute stage (``placement``), and one pipeline execution
per workspace (``workspace``)."""

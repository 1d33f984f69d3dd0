"""Dataset sources, deterministic WebDataset shards, and the shard readers."""

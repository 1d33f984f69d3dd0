"""File formats: checksums and atomic writes of files and folders, model files."""

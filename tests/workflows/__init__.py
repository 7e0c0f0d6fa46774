"""Unit tests of the workflow engine's pure core: definitions, the advance step, the status views."""

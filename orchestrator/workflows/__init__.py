"""Workflows: definitions, the execution state and the pure advance step that moves it on."""

"""Live LLM traces: a streaming trace API, a resumable client, and a Panel dashboard."""

__version__ = "0.1.0"

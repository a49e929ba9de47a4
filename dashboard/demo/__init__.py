"""Synthetic LLM traffic for the demo and the benchmarks: the catalogue of models and operations,
the traffic model that draws calls, and the runner that sends them to the API."""

from .runner import DemoStats, run_demo
from .traffic import CANCELLED_ERROR, CallPlan, TrafficModel, user_names

__all__ = ["CANCELLED_ERROR", "CallPlan", "DemoStats", "TrafficModel", "run_demo", "user_names"]

"""Agents that act in latentrl environments (installed as ``latentrl.agents``)."""

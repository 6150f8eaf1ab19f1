"""Inference: model backends (backends: transformers, vLLM, OpenAI-compatible) and the agents that run a request
through intent, retrieval, fact location and generation (agents)."""

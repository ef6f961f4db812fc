"""blis: a fast, faithful simulator of LLM inference serving clusters."""
__version__ = "0.1.0"

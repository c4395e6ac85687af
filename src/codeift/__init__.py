"""codeift: measure what the coding share of instruction-tuning data does to LLM reasoning."""

__version__ = "0.1.0"

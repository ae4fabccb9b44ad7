"""Training-side maths: the losses of LLM-Embedder and the cross-device gather they rely on."""

"""Retrieval: the passage store (passages), the dense encoder (encoder), the sharded vector index (index) and the
retriever that embeds a corpus once and searches it (retriever)."""

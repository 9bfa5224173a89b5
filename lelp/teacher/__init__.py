"""The teacher: loading an uploaded classifier safely, and one pass of it over the data.

``loading`` checks a model directory and loads it without foreign code; ``features`` runs the
teacher (or a frozen encoder) over a dataset and caches the embeddings and logits on disk.
"""

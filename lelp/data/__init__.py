"""The data a job reads: tabular text datasets, their labels and splits, and grown transfer sets.

``datasets`` reads and validates CSV/TSV/JSONL/Parquet files (plain pandas, so the API process
can use it); ``augment`` makes the seeded variants of training rows that the teacher labels.
"""

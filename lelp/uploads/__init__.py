"""Checks of uploaded models, before anything in them runs or is allocated.

``model_limits`` bounds a model's size from ``config.json`` alone, ``model_files`` copies a
model directory's own files (never a link), ``tokenizer_probe`` exercises a tokenizer in a
child process, ``jsonsafe`` reads untrusted JSON with bounded size and depth, ``pickle_scan``
refuses pickle weights that would import anything but tensors (without unpickling them).
"""

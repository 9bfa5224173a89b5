"""Training: the student's loop, its state and checkpoints, and fine-tuning a teacher.

``loop`` trains a student against targets (epochs, validation, patience, cancel checks),
``state`` saves and restores a run's checkpoint, ``make_teacher`` fine-tunes an encoder into a
teacher for users without one.
"""

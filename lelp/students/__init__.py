"""Student architectures: ``ngram``, ``encoder_mlp`` and ``transformer``, all with an S*C head."""

from lelp.students.registry import STUDENT_KINDS, student_class

__all__ = ["STUDENT_KINDS", "student_class"]

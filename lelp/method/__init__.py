"""The method: what LELP and each baseline teach the student.

``registry`` names the methods (torch-free: the API and the CLIs read it); ``projection`` is
LELP's projector (and the random control's), ``kmeans_subclass`` the k-means control,
``targets`` builds each method's training targets and ``losses`` the one soft cross-entropy
they all train with.
"""

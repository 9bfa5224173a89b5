"""Where a job computes: CPU or CUDA, mixed precision, and one job over several GPUs.

``resolve`` says what ``device`` means (torch imported only when called), ``cuda`` what
training does differently on a GPU, ``distributed`` where a process stands in a DDP run,
``ddp_launch`` restarts a job under torchrun and waits, and ``ddp_rank`` is each rank's entry point.
"""

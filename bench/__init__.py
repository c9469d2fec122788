"""The cost benchmark: FLOP counts (flops), model sizes (sizes), wall time (timing), outputs (report); the command
line is bench/benchmark.py and a whole GPU session is bench/gpu_run.sh."""

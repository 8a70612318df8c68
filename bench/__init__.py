"""Load benchmark of the tracker's endpoints and event streams: ``python -m bench``.

The tracker, PostgreSQL and this load generator run on the same machine, so every
figure includes the load generator's share of the CPU.
"""

"""The star topology on real processes: one parameter server (rank 0) and K workers."""

"""Operations: replication, local server processes, config rendering, deploy."""

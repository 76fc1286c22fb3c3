"""Training: the configuration sections (`config`), the loop (`train`) around its saved state
(`state`) and hooks (`callbacks`), learning-rate schedules, precision and threads (`runtime`),
distributed helpers, weight EMA, evaluation, the metrics files and progress display (both
callbacks), the run folder (`rundir`) and the run's report."""

"""Training: the configuration sections (`config`), the loop (`train`), learning-rate schedules,
precision and threads (`runtime`), distributed helpers, weight EMA, evaluation, progress
display, the run folder (`rundir`) and the run's report."""

"""Training: the configuration sections (`config`), the loop (`train`), learning-rate schedules,
gradient clipping and accumulation (`optim`), the soft-target loss (`loss`), precision and
threads (`runtime`), distributed helpers, weight EMA, evaluation, progress display, the run
folder (`rundir`) and the run's report."""

"""Training: the configuration sections (`config`), the loop (`train`) around its saved state
(`state`) and hooks (`callbacks`), `resnetkit.fit` for a user's module and DataLoaders (`fit`),
learning-rate schedules, gradient clipping and accumulation (`optim`), the soft-target loss
(`loss`), precision and threads (`runtime`), distributed helpers, weight EMA, evaluation, the
metrics files and progress display (both callbacks), the run folder (`rundir`) and the run's
report."""

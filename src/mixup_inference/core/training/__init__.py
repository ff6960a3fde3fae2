"""Training: the loop of the four regimes (ERM, mixup, AT, interpolated AT; `loop`), a run's
hyperparameters and the names they take (`config`), its optimiser, schedule and lookahead EMA
(`state`), and the per-example mixup of its inputs (`mixing`)."""

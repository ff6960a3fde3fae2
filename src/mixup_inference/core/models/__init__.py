"""Models: the architectures behind a fixed input normalisation (`networks`), model files written
atomically and read with weights-only loads (`files`), the authors' released checkpoints
(`checkpoints`), model files fetched from a URL and checksummed (`downloads`), and the opt-in fast
paths (`fastpath`) with the workflow's per-job choice of them (`speed`)."""

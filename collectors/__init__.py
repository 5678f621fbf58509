"""Agency side of the pipeline: sources that read logs, and where they keep their checkpoints."""

from collectors.checkpoint import Checkpoint, CheckpointStore
from collectors.filetail import FileTailSource, TailBatch

__all__ = ["Checkpoint", "CheckpointStore", "FileTailSource", "TailBatch"]

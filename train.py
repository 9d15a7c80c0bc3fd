"""Train or fine-tune a Fashion-MNIST classifier: ``accelerate launch train.py --output_dir out`` (see --help).

A thin wrapper: the logic lives in :mod:`hf_fmnist.training.loop`. Also runs as ``python train.py``,
``torchrun --nproc_per_node N train.py`` and ``hf-fmnist train``.
"""

import sys

from hf_fmnist.training.loop import main

if __name__ == "__main__":
    sys.exit(main())

"""The `datasets` builder for Fashion-MNIST, installed as ``hf_fmnist.dataset_script``."""

"""Card templates (Jinja2 Markdown), installed as ``hf_fmnist.model_card``."""

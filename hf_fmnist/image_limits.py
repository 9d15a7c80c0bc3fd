"""What hf_fmnist accepts in an image from a stranger: which formats Pillow may open, and how many pixels.

Shared by ``predict`` (image files), ``png`` (dataset cells) and the demo (Gradio uploads); it imports nothing, so
every one of them, and a generated Space, can use it.
"""

MAX_PIXELS = 1 << 23  # 8.4 MP (4K UHD fits); PIL's own bomb limit is 89 MP, far more than a 28x28 model needs
# The PIL formats opened for images from strangers. PIL otherwise tries every plugin it has, whatever the file's name:
# EPS runs Ghostscript (an external interpreter of the file's PostScript), and rarer plugins are less hardened. These
# are PIL's own decoders, and cover every suffix ``hf-fmnist predict`` looks for (PPM also reads PGM and PBM).
IMAGE_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP", "PPM")

"""edgeprune: prune object detectors as a whole and search pruning rates against latency measured on Jetson boards.

Importing the package stays light: submodules import torch and friends only when they are used.
"""

__version__ = "0.1.0"

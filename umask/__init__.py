"""U-MASK Edge: one import namespace over the top-level folders.

``umask.runtime`` -> runtime/ (numpy only, ships to devices, never imports torch)
``umask.train``   -> train/   (torch models, data sets, simulator, training loops)
``umask.export``  -> export/  (checkpoint -> verified bundle)
``umask.bench``   -> benchmarks/ (accuracy and latency harness)
"""

__version__ = "0.1.0"

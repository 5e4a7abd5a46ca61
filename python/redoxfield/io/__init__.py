"""Result files: the HDF5 writer (:mod:`redoxfield.io.hdf5`); schema in docs/hdf5.md."""

from .hdf5 import FORMAT_NAME, FORMAT_VERSION, ResultWriter

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "ResultWriter"]
